"""Split a COCO instance JSON into a training and a held-back part, deterministically.

    python scripts/split_coco.py ../shared/data/pennfudan/instances.json --every 5 --out-dir runs/pennfudan_split

Images sorted by id; the one at position i is held back when ``i % every == offset`` (Penn-Fudan's
113 photos, every 5: 90 train + 23 held back, ids 1, 6, 11, ...). Writes ``train.json`` and
``val.json`` (same categories and info, the images' annotations with them), so ``file_name`` entries
stay relative to the original image folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def split_coco(data: dict, every: int, offset: int = 0) -> tuple[dict, dict]:
    """(train, val) COCO dicts of ``data``; see the module docstring."""
    if every < 2 or not 0 <= offset < every:
        raise ValueError(f"every must be >= 2 and 0 <= offset < every, got every={every}, offset={offset}")
    images = sorted(data["images"], key=lambda im: im["id"])
    held = {im["id"] for i, im in enumerate(images) if i % every == offset}

    def part(keep):
        return {**data, "images": [im for im in images if keep(im["id"])],
                "annotations": [a for a in data["annotations"] if keep(a["image_id"])]}

    return part(lambda i: i not in held), part(lambda i: i in held)


def main(argv=None) -> int:
    from clipapro.io import write_json_atomic

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("annotations")
    p.add_argument("--every", type=int, default=5, help="hold back one image in EVERY (by id order)")
    p.add_argument("--offset", type=int, default=0, help="which one of each EVERY is held back")
    p.add_argument("--out-dir", required=True)
    a = p.parse_args(argv)
    train, val = split_coco(json.loads(Path(a.annotations).read_text()), a.every, a.offset)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "train.json", train)
    write_json_atomic(out / "val.json", val)
    print(f"{len(train['images'])} train images ({len(train['annotations'])} boxes), {len(val['images'])} held back "
          f"({len(val['annotations'])} instances) -> {out}/train.json, {out}/val.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
