"""What every command shares (private: not a command): the usage error, option parsing, deprecated
option aliases, checked input paths and ``--figure``.

A command that writes labels gets a figure option in two lines::

    add_figure_argument(parser)                                          # in add_arguments
    write_label_figure(args.figure, image, labels, class_names)          # in run (no-op without --figure)
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

__all__ = [
    "UsageError", "add_alias", "add_dataset_arguments", "add_figure_argument", "check_outputs_apart", "figure_path",
    "flag_error",
    "input_file", "parse_options", "read_input_image", "write_label_figure",
]


class UsageError(Exception):
    """Bad arguments found after parsing (including missing or unreadable inputs): exit code 2."""


def flag_error(err: BaseException, args, flags: dict | None = None) -> UsageError:
    """A library error as a :class:`UsageError` in the command line's words: parameter names become
    their flags (``threshold must ...`` -> ``--threshold must ...``). ``flags`` maps parameter names
    whose flag differs (``{"apro_options": "--apro-opt"}``); names with an underscore are replaced
    anywhere, plain words only at the start of the message."""
    import re

    names = {k: f"--{k.replace('_', '-')}" for k in vars(args) if not k.startswith("_")}
    names.update(flags or {})
    text = str(err)
    head, sep, rest = text.partition(" ")
    if sep and head.rstrip(":") in names:
        text = names[head.rstrip(":")] + head[len(head.rstrip(":")):] + " " + rest
    for name, flag in names.items():
        if "_" in name:
            text = re.sub(rf"(?<![-\w]){re.escape(name)}(?![\w-])", flag, text)
    return UsageError(text)


def parse_options(items, flag: str) -> dict:
    """``["key=value", ...]`` from a repeatable ``--xxx-opt KEY=VALUE`` flag -> dict.

    VALUE is read as a Python literal (``3``, ``0.1``, ``True``, ``(8, 16)``, ``'text'``), else as JSON
    (``true``, ``null``, ``[1, 2]``), else kept as a plain string.

    Example:
        >>> parse_options(["zeta_g=0.02", "mode=parallel", "dilations=(8, 16)", "flag=true"], "--refine-opt")
        {'zeta_g': 0.02, 'mode': 'parallel', 'dilations': (8, 16), 'flag': True}
    """
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"{flag} must be KEY=VALUE with KEY a name, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            try:
                out[key] = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                out[key] = value
    return out


class _DeprecatedAlias(argparse.Action):
    """An old option spelling kept for one release: stores into the new option's dest and warns."""

    def __init__(self, option_strings, dest, *, new: str, inner_nargs=None, inner_const=None, append=False,
                 **kwargs):
        self.new, self.inner_const, self.append = new, inner_const, append
        super().__init__(option_strings, dest, nargs=inner_nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"clipapro: warning: {option_string} is deprecated and will be removed, use {self.new}",
              file=sys.stderr, flush=True)
        if self.nargs == 0:
            values = self.inner_const
        if self.append:
            values = list(getattr(namespace, self.dest, None) or []) + [values]
        setattr(namespace, self.dest, values)


def add_alias(parser, old: str, new: str, *, flag: bool = False, const=True, append: bool = False) -> None:
    """Keep ``old`` as a hidden, warning spelling of the option ``new`` (same destination); ``flag``:
    ``old`` takes no value and stores ``const``; ``append``: ``new`` is a repeatable option."""
    dest = new.lstrip("-").replace("-", "_")
    for action in parser._actions:  # a required option: argparse would not count the alias as given
        if new in action.option_strings and action.required:
            action.required = False
            action.help = f"{action.help} (required)"
            required = list(parser.get_default("_required_options") or [])
            parser.set_defaults(_required_options=required + [(dest, new)])
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, inner_nargs=0 if flag else None, inner_const=const,
                        append=append)


def input_file(path, what: str = "input") -> Path:
    """A given input file that must exist and be a regular, readable file (UsageError otherwise)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} not found: {p}")
    if not p.is_file():
        raise UsageError(f"{what} {p} is not a regular file")
    try:
        with open(p, "rb"):
            pass
    except OSError as err:
        raise UsageError(f"cannot read {what} {p}: {err.strerror or err}") from None
    return p


def read_input_image(path, what: str = "image"):
    """:func:`clipapro.io.read_image` of a file the user named: missing or unreadable is a UsageError."""
    from clipapro.io import UnreadableFileError, read_image

    try:
        return read_image(path)
    except (FileNotFoundError, UnreadableFileError) as err:
        raise UsageError(str(err).replace("image", what, 1)) from None


def check_outputs_apart(inputs, outputs) -> None:
    """UsageError when two outputs are the same file, an output would overwrite an input, or an output
    exists and is not a regular file (a symlink or a device would be replaced itself)."""
    from clipapro.io import check_output_path

    seen: dict[Path, str] = {}
    ins = {Path(p).resolve(): str(p) for p in inputs}
    for out in outputs:
        try:
            check_output_path(out)
        except ValueError as err:
            raise UsageError(str(err)) from None
        key = Path(out).resolve()
        if key in ins:
            raise UsageError(f"output {out} would overwrite the input {ins[key]}")
        if key in seen:
            raise UsageError(f"two outputs would go to the same file {out} (from {seen[key]!r} and {str(out)!r}); "
                             "rename one input or write to separate folders")
        seen[key] = str(out)


def add_dataset_arguments(parser, defaults: dict, *, split_help: str, classes_help: str):
    """The ``data`` group shared by the dataset commands (--dataset, --root, --split, --classes,
    --dataset-opt); ``defaults`` are the library job's (its signature). Returns the group."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", required=True,
                   help="catalog name (voc21, voc20, context60, context59, cocostuff171, folder, hf:...)")
    g.add_argument("--root", default=defaults["root"], help="dataset root folder")
    g.add_argument("--split", default=defaults["split"], help=split_help)
    g.add_argument("--classes", default=defaults["classes"], help=classes_help)
    g.add_argument("--dataset-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for the dataset reader (repeatable)")
    return g


_FIGURE_HELP = "also write a figure (PNG): the photo with the label colours and a legend of the classes present"


def add_figure_argument(parser, *, many: bool = False, help: str | None = None) -> None:
    """Add ``--figure PATH``: also write a PNG of the photo with its label colours and a class legend.

    ``many``: the command takes several images; PATH is then a folder of ``<image stem>.png`` figures
    (see :func:`figure_path`). ``help`` replaces the default help text (e.g. for a chart).
    """
    text = help or (_FIGURE_HELP + (" (several images: PATH is a folder of <stem>.png)" if many else ""))
    parser.add_argument("--figure", default=None, metavar="PATH", help=text)


def figure_path(figure, image_path, n_images: int):
    """Where the figure of ``image_path`` goes: ``figure`` itself for one image, else
    ``figure/<image stem>.png``; None without ``--figure``."""
    if figure is None:
        return None
    return Path(figure) if n_images == 1 else Path(figure) / f"{Path(image_path).stem}.png"


def write_label_figure(path, image, labels, class_names=None, *, quiet: bool = False):
    """Write :func:`clipapro.viz.save_overlay` to ``path`` (nothing when ``path`` is None) and say so.

    ``image``: uint8 (H, W, 3) or float (3, H, W) in [0, 1]; ``labels``: (H, W) ints in 0..255;
    ``class_names``: name per label index (or None: legend entries say ``class i``).
    """
    if path is None:
        return None
    from clipapro.viz import save_overlay

    out = save_overlay(path, image, labels, class_names)
    if not quiet:
        print(f"figure: {out}")
    return out
