"""``clipapro prompts``: list the class sets and template sets (or show one)."""

from __future__ import annotations

NAME = "prompts"
HELP = "list class sets and prompt-template sets (--protocols: the published presets), or show one with --show"


def add_arguments(parser) -> None:
    parser.add_argument("--show", default=None, metavar="NAME",
                        help="print the classes (with prompt names) or templates of this set, or a preset's JSON")
    parser.add_argument("--protocols", action="store_true",
                        help="list the published protocol presets with the mIoU their sources report")


def run(args) -> int:
    from clipapro.commands._common import UsageError
    from clipapro.prompts import get_class_set, get_templates, list_class_sets, list_template_sets
    from clipapro.protocols import get_protocol, list_protocols

    classes, templates = list_class_sets(), list_template_sets()
    if args.protocols and args.show is None:
        print(f"{'preset':<24} {'dense':<10} {'window':<9} {'reported mIoU':>13}  source")
        for name in list_protocols():
            p = get_protocol(name)
            o = p.predict_options()
            crop = o.get("slide_crop")
            window = f"{crop}/{o.get('slide_stride')}" if crop else "whole"
            miou = "-" if p.reported["mIoU"] is None else f"{p.reported['mIoU']:.2f}"
            print(f"{name:<24} {o['dense_mode']:<10} {window:<9} {miou:>13}  {p.reported['source']}")
        print("their numbers, for their code with real weights (ViT-B/16, OpenAI); run one with "
              "`clipapro evaluate --protocol NAME --root ...`")
        return 0
    if args.show in list_protocols():
        import json

        print(json.dumps(get_protocol(args.show).data, indent=2))
        return 0
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
