"""The ``clipapro`` command line: one subcommand per module in :mod:`clipapro.commands`.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int | None``
and is discovered automatically, so each part of the toolkit adds its own subcommand as it lands.
Errors print as one line (``--debug`` shows the traceback). Exit codes: 0 ok, 1 runtime failure,
2 usage error (bad arguments).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the uninformative None / False of optional values and flags."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class UsageError(Exception):
    """Raised by a command for bad arguments found after parsing; exits with code 2."""


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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code = args._run(args)
        return int(code or 0)
    except UsageError as err:
        if args.debug:
            raise
        print(f"clipapro {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipapro {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI turns every failure into one line
        if args.debug:
            raise
        print(f"clipapro {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
