"""Refinement quality study: every refiner x coarse-noise model x every annotated photo set, one run.

Coarse predictions are simulated from the ground truth of each set in ``../shared/data`` with
ground truth (``scripts/refine_sets.py``: voc_samples, voc_extra, camvid_train, camvid_val,
cocostuff (K = 171), cocostuff150 (K = 150), pennfudan (K = 2)), photos resized so the long side is
at most 513 px. Five noise models (``scripts/refine_noise.py``): iid, confuse, spurious, weak,
network. Each method refines each coarse map through ``clipapro.refiners.refine``; ``none`` is the
coarse row.

Scores, per set (pooled over its photos) and as the mean over sets:

* mIoU (%): mmseg's convention (``clipapro.metrics``), over every class present in the ground truth
  or the prediction of the set's photos: a speck of an absent class costs a whole class. The
  gain is mIoU minus the coarse (``none``) mIoU of the same set and noise model.
* BF (%): boundary F-measure at 2 px (``clipapro.metrics.boundary_counts``, Csurka et al.,
  per class, counts pooled over the set's photos, mean over the classes of its ground truth).
* band (%): mIoU inside an 8-px band around ground-truth edges (``band_confusion``).
* thin (%): recall of ground-truth pixels within 4 px of the skeleton of parts thinner than
  12 px (``thin_counts``), pooled over the set; empty when the set has no thin part.
* time: median seconds per image of the ``refine`` call (all photos and noise models of the set;
  the summary: median over every call), ``--threads`` torch threads.
* MiB: peak resident memory above the level at entry (after ``gc.collect`` and glibc
  ``malloc_trim`` return freed memory to the system), sampled every 1 ms by a thread, in a separate
  untimed call of each method on the first photo of each set with the iid model; the summary is the
  largest over sets. It counts numpy, torch and the compiled core alike.

Photos per set: 3 by default (``--per-set``), 2 with ``--quick``, spread evenly over the set's ids;
``--per-set-large`` caps the sets with K > 100 (default 3 too; there DenseCRF, PAMR and APro take
3-10 s per photo, geo-crf under 1 s).
``--json`` is rewritten after every set; ``--resume`` keeps the sets it holds for the same
configuration, so an interrupted run continues where it stopped.

    python scripts/refine_quality.py --quick --methods none,crf-tree,densecrf   # the fast screen
    python scripts/refine_quality.py --quick                       # all methods (PAMR at K = 171 dominates)
    python scripts/refine_quality.py --json out.json --markdown table.md --figure-dir figs
    python scripts/refine_quality.py --quick --methods none,crf-tree --noise iid,network
    python scripts/refine_quality.py --quick --extra 'ct8=crf-tree:{"w_tree": 8}'
    python scripts/refine_quality.py --held-out            # photos the default run leaves out

Deterministic given ``--seed`` (the noise of photo ``id`` of set ``s`` under model ``m`` is seeded by
``(seed, crc32("s/id/m"))``, whatever else runs).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parent
if (_CHECKOUT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
    sys.path.insert(0, str(_CHECKOUT))
sys.path.insert(0, str(_HERE))
from refine_noise import NOISE_MODELS, coarse_probs  # noqa: E402
from refine_report import (  # noqa: E402
    BASELINE,
    _num,
    _strict,
    format_markdown,
    format_noise_table,
    format_summary,
    summary_rows,
)
from refine_sets import MAX_SIDE, SETS, load_set  # noqa: E402

from clipapro.metrics import EdgeScorer, confusion_counts, f_from_counts, metrics_from_counts  # noqa: E402
from clipapro.refiners import get_refiner, list_refiners, refine  # noqa: E402

DATA = _CHECKOUT.parent / "shared" / "data"
PER_SET = 3
QUICK_PER_SET = 2
LARGE_K = 100  # sets with more classes (COCO-Stuff 171 / 150) are the slow ones for DenseCRF / PAMR / APro
LARGE_PER_SET = 3


def default_methods() -> list[str]:
    """``none`` first, then every registered refiner whose optional packages are installed."""
    out = [BASELINE]
    for name in list_refiners():
        if name == BASELINE:
            continue
        try:
            get_refiner(name).check_available()
        except ImportError:
            continue
        out.append(name)
    return out


class PeakRSS:
    """Peak resident memory above the level at entry, in MiB (see the module docstring)."""

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.mib = (self.peak - self.base) / 2**20


def _seed(seed: int, set_name: str, photo_id: str, noise: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{set_name}/{photo_id}/{noise}".encode())])


class Cell:
    """Pooled counts of one set x noise x method."""

    def __init__(self, k: int):
        self.conf = torch.zeros((k, k + 1), dtype=torch.int64)
        self.boundary = np.zeros((k, 4), np.int64)
        self.band = np.zeros((k, k), np.int64)
        self.thin = [0, 0]
        self.times: list[float] = []

    def add(self, pred: np.ndarray, gt: torch.Tensor, scores: dict, seconds: float):
        self.conf += confusion_counts(torch.from_numpy(pred), gt, self.conf.shape[0])
        self.boundary += scores["boundary"]
        self.band += scores["band"]
        self.thin[0] += scores["thin"][0]
        self.thin[1] += scores["thin"][1]
        self.times.append(seconds)

    def summary(self) -> dict:
        k = self.band.shape[0]
        band = metrics_from_counts(torch.from_numpy(np.concatenate([self.band, np.zeros((k, 1), np.int64)], 1)))
        return {
            "miou": 100 * metrics_from_counts(self.conf).miou,
            "bf": 100 * f_from_counts(self.boundary),
            "band": 100 * band.miou,
            "thin": 100 * self.thin[0] / self.thin[1] if self.thin[1] else float("nan"),
            "time_s": float(np.median(self.times)) if self.times else float("nan"),
        }


def run_study(sets, noise_models, methods: dict, *, seed: int = 0, progress: bool = True, memory: bool = True,
              done=None, on_set=None):
    """Score every method on every set x noise model. ``methods``: name -> (refiner, options).

    Returns ``(cells, records, mem)``: ``cells[set][noise][method]`` = :meth:`Cell.summary` plus
    ``gain``, ``records`` one dict per image x noise x method, ``mem[set][method]`` peak MiB.
    ``done``: {set: (cells, records, mem)} of sets finished by an earlier run (skipped);
    ``on_set(photo_set, cells, records, mem, figure)`` is called after each set, ``figure`` holding
    the label maps of its first photo: {"id", "image", "gt", "rows": {noise: {"coarse"|method: labels}}}."""
    from tqdm import tqdm

    done = done or {}
    cells, records, mem = {}, [], {}
    total = sum(len(s.photos) for s in sets) * len(noise_models)
    bar = tqdm(total=total, desc="refine study", disable=not progress, file=sys.stderr)
    for s in sets:
        if s.name in done:
            cells[s.name], old_records, mem[s.name] = done[s.name]
            records += old_records
            bar.update(len(s.photos) * len(noise_models))
            continue
        acc = {n: {m: Cell(s.num_classes) for m in methods} for n in noise_models}
        mem[s.name], set_records, fig = {}, [], {"id": s.photos[0][0], "image": s.photos[0][1],
                                                 "gt": s.photos[0][2], "rows": {}}
        for j, (pid, img, gt) in enumerate(s.photos):
            gt_t = torch.from_numpy(gt.astype(np.int64))
            scorer = EdgeScorer(gt, s.num_classes)
            for noise in noise_models:
                probs = coarse_probs(gt, s.num_classes, noise, _seed(seed, s.name, pid, noise),
                                     background=s.background)
                if j == 0:
                    fig["rows"][noise] = {"coarse": probs.argmax(0).numpy().astype(np.uint8)}
                for m_name, (method, opts) in methods.items():
                    t0 = time.perf_counter()
                    out = probs if method == BASELINE else refine(img, probs, method=method, **opts)
                    dt = time.perf_counter() - t0
                    pred = out.argmax(0).numpy().astype(np.int64)
                    scores = scorer.score(pred)
                    acc[noise][m_name].add(pred, gt_t, scores, dt)
                    per = metrics_from_counts(confusion_counts(torch.from_numpy(pred), gt_t, s.num_classes))
                    hits, tot = scores["thin"]
                    set_records.append({"set": s.name, "id": pid, "noise": noise, "method": m_name,
                                        "miou": _num(100 * per.miou),
                                        "bf": _num(100 * f_from_counts(scores["boundary"])),
                                        "thin": _num(100 * hits / tot) if tot else None, "time_s": dt})
                    if j == 0:
                        fig["rows"][noise][m_name] = pred.astype(np.uint8)
                    if memory and j == 0 and noise == noise_models[0] and method != BASELINE:
                        with PeakRSS() as peak:  # untimed: the sampling thread competes for the GIL
                            refine(img, probs, method=method, **opts)
                        mem[s.name][m_name] = peak.mib
                bar.update(1)
                bar.set_postfix_str(f"{s.name} {noise} {pid}")
        cells[s.name] = {n: {m: c.summary() for m, c in acc[n].items()} for n in noise_models}
        for n in noise_models:
            base = cells[s.name][n].get(BASELINE, {}).get("miou", float("nan"))
            for row in cells[s.name][n].values():
                row["gain"] = row["miou"] - base
        records += set_records
        if on_set is not None:
            on_set(s, cells[s.name], set_records, mem[s.name], fig)
    bar.close()
    return cells, records, mem


def parse_methods(ap, spec: str, extra: list) -> dict:
    names = [m for m in spec.split(",") if m] if spec else default_methods()
    methods = {}
    for m in names:
        if m != BASELINE and m not in list_refiners():
            ap.error(f"unknown method {m!r}: use one of {list_refiners()}")
        methods[m] = (m, {})
    for item in extra:
        name, sep, rest = item.partition("=")
        method, _, opts = rest.partition(":")
        if not sep or method not in list_refiners():
            ap.error(f"--extra {item!r}: expected NAME=METHOD[:JSON options] with METHOD in {list_refiners()}")
        try:
            options = json.loads(opts) if opts else {}
            get_refiner(method).check_options(options)
        except (ValueError, TypeError) as err:
            ap.error(f"--extra {item!r}: {err}")
        methods[name] = (method, options)
    for name, (method, _) in methods.items():
        if method != BASELINE:
            try:
                get_refiner(method).check_available()
            except ImportError as err:
                ap.error(f"method {name!r}: {err}")
    return methods


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--sets", default="", help=f"comma-separated sets (default: all of {list(SETS)} found)")
    ap.add_argument("--per-set", type=int, default=None,
                    help=f"photos per set, spread evenly over its ids (default {PER_SET}; "
                         f"{QUICK_PER_SET} with --quick)")
    ap.add_argument("--per-set-large", type=int, default=None,
                    help=f"photos per set with K > {LARGE_K} (default {LARGE_PER_SET}, at most --per-set): "
                         "DenseCRF, PAMR and APro take 3-10 s per photo at K = 171")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_PER_SET} photos per set")
    ap.add_argument("--held-out", action="store_true",
                    help=f"score photos the default run does not use (its {PER_SET} per set left out first; "
                         "voc_samples and voc_extra have 2 left)")
    ap.add_argument("--noise", default="", help=f"comma-separated noise models (default: all of {list(NOISE_MODELS)})")
    ap.add_argument("--methods", default="", help="comma-separated refiner names (default: none + every available one)")
    ap.add_argument("--extra", action="append", default=[],
                    help="extra method NAME=METHOD:JSON_OPTIONS, e.g. 'ct=crf-tree:{\"w_tree\": 8}' (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    ap.add_argument("--json", type=Path, default=None, help="write the tables and per-image results here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the README table here")
    ap.add_argument("--figure-dir", type=Path, default=None, help="write one comparison grid PNG per set here")
    ap.add_argument("--resume", action="store_true",
                    help="with --json: keep the sets that file already holds for the same configuration")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)
    if args.resume and not args.json:
        ap.error("--resume needs --json (the file it resumes from)")
    for name in ("per_set", "per_set_large"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    per_set = args.per_set or (QUICK_PER_SET if args.quick else PER_SET)
    per_set_large = min(per_set, args.per_set_large or LARGE_PER_SET)
    torch.set_num_threads(max(1, args.threads))
    noise_models = [n for n in args.noise.split(",") if n] or list(NOISE_MODELS)
    for n in noise_models:
        if n not in NOISE_MODELS:
            ap.error(f"unknown noise model {n!r}: use one of {list(NOISE_MODELS)}")
    set_names = [s for s in args.sets.split(",") if s] or list(SETS)
    for s in set_names:
        if s not in SETS:
            ap.error(f"unknown set {s!r}: use one of {list(SETS)}")
    methods = parse_methods(ap, args.methods, args.extra)
    exclude = PER_SET if args.held_out else None
    sets = [load_set(args.data_root, s, per_set=per_set, per_set_large=per_set_large, large_k=LARGE_K,
                     exclude=exclude) for s in set_names]
    missing = [s.name for s in sets if not s.photos]
    sets = [s for s in sets if s.photos]
    if missing:
        print(f"skipped (not found under {args.data_root}): {', '.join(missing)}", file=sys.stderr)
    if not sets:
        ap.error(f"no photo set with ground truth under {args.data_root}")
    config = {"noise_models": noise_models, "methods": {k: [v[0], v[1]] for k, v in methods.items()},
              "seed": args.seed, "threads": args.threads, "max_side": MAX_SIDE}
    photo_ids = {s.name: [p[0] for p in s.photos] for s in sets}
    done = _resumable(args.json, config, photo_ids) if args.resume else {}
    if done:
        print(f"resuming: {', '.join(done)} read from {args.json}", file=sys.stderr)
    partial = {"config": {**config, "sets": photo_ids}, "complete": False, "per_set": {}, "peak_mib": {},
               "images": []}
    for name, (c, r, m) in done.items():
        partial["per_set"][name], partial["peak_mib"][name] = c, m
        partial["images"] += r

    def on_set(photo_set, set_cells, set_records, set_mem, fig):
        if args.figure_dir:
            from refine_figures import save_grid

            save_grid(args.figure_dir / f"{photo_set.name}.png", fig["image"], fig["rows"], fig["gt"],
                      [m for m in methods if m != BASELINE],
                      title=f"{photo_set.name} / {fig['id']}: image | coarse | methods | ground truth, "
                            "one row per noise model")
        if args.json:  # after every set, so an interrupted run resumes (--resume) where it stopped
            from clipapro.io import write_json_atomic

            partial["per_set"][photo_set.name], partial["peak_mib"][photo_set.name] = set_cells, set_mem
            partial["images"] += set_records
            write_json_atomic(args.json, _strict(partial))

    cells, records, mem = run_study(sets, noise_models, methods, seed=args.seed, progress=not args.no_progress,
                                    memory=not args.no_memory, done=done, on_set=on_set)
    summary = summary_rows(cells, noise_models, methods, records, mem)
    print(f"sets: {', '.join(f'{s.name} ({len(s.photos)} photos, K={s.num_classes})' for s in sets)}; "
          f"long side <= {MAX_SIDE} px; seed {args.seed}; {args.threads} threads")
    for n in noise_models:
        print()
        print(format_noise_table(cells, n, methods))
    print()
    print(format_summary(summary, noise_models))
    if args.markdown:
        from clipapro.io import write_bytes_atomic

        write_bytes_atomic(args.markdown, format_markdown(summary, cells, sets, noise_models, methods, args).encode())
    if args.json:
        from clipapro.io import write_json_atomic

        write_json_atomic(args.json, _strict({"config": {**config, "sets": photo_ids}, "complete": True,
                                              "summary": summary, "per_set": cells, "peak_mib": mem,
                                              "images": records}))
    return 0


def _resumable(path, config: dict, photo_ids: dict) -> dict:
    """{set: (cells, records, mem)} of the sets an earlier run with the same configuration finished."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    old_config = dict(old.get("config", {}))
    old_sets = old_config.pop("sets", {})
    if old_config != json.loads(json.dumps(config)):
        return {}
    out = {}
    for name, c in old.get("per_set", {}).items():
        if name in photo_ids and old_sets.get(name) == photo_ids[name]:
            records = [r for r in old.get("images", []) if r["set"] == name]
            out[name] = (c, records, old.get("peak_mib", {}).get(name, {}))
    return out

if __name__ == "__main__":
    sys.exit(main())
