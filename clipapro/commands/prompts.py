"""``clipapro prompts``: list the class sets and template sets (or show one)."""

from __future__ import annotations

NAME = "prompts"
HELP = "list class sets and prompt-template sets, or show one with --show"


def add_arguments(parser) -> None:
    parser.add_argument("--show", default=None, metavar="NAME",
                        help="print the classes (with prompt names) or templates of this set")


def run(args) -> int:
    from clipapro.commands._common import UsageError
    from clipapro.prompts import get_class_set, get_templates, list_class_sets, list_template_sets

    classes, templates = list_class_sets(), list_template_sets()
    if args.show is None:
        print("class sets:")
        for name in classes:
            cs = get_class_set(name)
            print(f"  {name:<16} {len(cs):>4} classes  ({', '.join(cs.names[:4])}, ...)")
        print("template sets:")
        for name in templates:
            t = get_templates(name)
            print(f"  {name:<16} {len(t):>4} templates ({t[0]!r}, ...)")
        return 0
    if args.show in classes:
        cs = get_class_set(args.show)
        for i, (name, prompts) in enumerate(zip(cs.names, cs.prompts, strict=True)):
            syn = "" if prompts == (name,) else ": " + ", ".join(prompts)
            print(f"{i:>4} {name}{syn}")
        return 0
    if args.show in templates:
        for t in get_templates(args.show):
            print(t)
        return 0
    raise UsageError(f"unknown set {args.show!r}: class sets {classes}, template sets {templates}")
