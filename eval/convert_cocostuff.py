"""Convert raw COCO-Stuff ``stuffthingmaps_trainval2017`` PNGs (ids 0..181, 255) to 171 train ids.

Writes ``<out>/<split>/<id>_labelTrainIds.png`` (mmsegmentation's layout); resumable (existing
outputs are kept), every file written atomically. See :func:`clipapro.data.convert_stuffthingmaps`.

    python eval/convert_cocostuff.py stuffthingmaps_trainval2017 data/coco_stuff164k/annotations
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from clipapro.data import convert_stuffthingmaps

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="folder holding train2017/ and val2017/ raw stuffthingmaps")
    ap.add_argument("out", help="annotations folder to write (train2017/, val2017/ inside)")
    ap.add_argument("--splits", nargs="+", default=["val2017", "train2017"], help="sub-folders to convert")
    ap.add_argument("--overwrite", action="store_true", help="rewrite existing outputs")
    args = ap.parse_args(argv)
    for split in args.splits:
        n = convert_stuffthingmaps(Path(args.src) / split, Path(args.out) / split, overwrite=args.overwrite)
        print(f"{split}: wrote {n} label maps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
