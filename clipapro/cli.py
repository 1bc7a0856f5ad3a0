"""The ``clipapro`` command line: one subcommand per module in :mod:`clipapro.commands`.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int | None``
and is discovered automatically, so each part of the toolkit adds its own subcommand as it lands.
Errors print as one line (``--debug`` shows the traceback). Exit codes: 0 ok, 1 failure while working,
2 bad arguments, including input files that are missing or cannot be read (``FileNotFoundError``,
:class:`clipapro.io.UnreadableFileError`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from clipapro.commands._common import UsageError
from clipapro.io import UnreadableFileError

__all__ = ["UsageError", "build_parser", "main"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the uninformative None / False of optional values and flags."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _command_modules():
    from clipapro import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"clipapro.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def _version() -> str:
    from clipapro import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipapro",
        description="Segmentation without pixel annotations: CLIP dense prediction + affinity propagation.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"clipapro {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=_HelpFormatter,
        )
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--boxes -5,0,20,30`` -> ``--boxes=-5,0,20,30``: argparse would take the value for an option.
    Commands list such options in ``NEGATIVE_VALUE_OPTIONS``."""
    if not argv:
        return argv
    wanted = {opt for mod in _command_modules() for opt in getattr(mod, "NEGATIVE_VALUE_OPTIONS", ())}
    out, i = [], 0
    while i < len(argv):
        if argv[i] in wanted and i + 1 < len(argv) and argv[i + 1].startswith("-") and len(argv[i + 1]) > 1 \
                and (argv[i + 1][1].isdigit() or argv[i + 1][1] == "."):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(_join_negative_values(argv))
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    missing = [flag for dest, flag in getattr(args, "_required_options", []) if getattr(args, dest, None) is None]
    if missing:  # required options that also have a deprecated spelling (see commands._common.add_alias)
        print(f"clipapro {args.command}: error: the following arguments are required: {', '.join(missing)}",
              file=sys.stderr)
        return 2
    try:
        code = args._run(args)
        return int(code or 0)
    except (UsageError, FileNotFoundError, UnreadableFileError) as err:
        if args.debug:
            raise
        print(f"clipapro {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipapro {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI turns every failure into one line
        if args.debug:
            raise
        print(f"clipapro {args.command}: error: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 2000 else text[:2000] + " ..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
