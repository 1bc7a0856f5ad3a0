"""``clipapro bench``: run one of the repository's benchmark / quality scripts (``scripts/*.py``).

    python -m clipapro bench propagation --quick
    python -m clipapro bench refine --quick --json refine.json

Everything after the benchmark name goes to the script unchanged (``python -m clipapro bench dense
--help`` shows the script's own options). The scripts are those of the source checkout, or in an
installed wheel the copy it ships as ``clipapro._scripts``.
"""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "run a benchmark or quality study script (propagation, dense, eval, pseudo, refine, adapters)"

#: benchmark name -> (script under scripts/, what it measures)
BENCHMARKS = {
    "propagation": ("bench_propagation.py", "tree filter / local filter / APro speed vs baselines"),
    "dense": ("bench_dense.py", "CLIP dense prediction images/s (random ViT-B/16 weights)"),
    "eval": ("bench_eval.py", "mIoU scoring images/s vs DataLoader workers"),
    "pseudo": ("bench_pseudo.py", "pseudo-labelling throughput, CLIP vs refinement time"),
    "refine": ("refine_quality.py", "refinement quality (mIoU, boundary, thin parts) on every annotated photo set"),
    "adapters": ("adapters_quality.py", "box -> mask and scribble -> mask quality on the real VOC photos"),
}

DESCRIPTION = HELP + ". Benchmarks: " + "; ".join(f"{k}: {v[1]} (scripts/{v[0]})" for k, v in BENCHMARKS.items())


def add_arguments(parser) -> None:
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="arguments passed to the script unchanged (e.g. --quick, --json out.json)")
    parser.add_argument("--scripts-dir", default=None,
                        help="folder holding the scripts (default: scripts/ of the source checkout)")


def scripts_dir(override=None):
    """The scripts folder: ``override``, else ``<checkout>/scripts`` beside the package, else the copy
    shipped in the wheel (``clipapro._scripts``)."""
    import importlib.resources as resources
    from pathlib import Path

    import clipapro

    if override:
        return Path(override)
    checkout = Path(clipapro.__file__).resolve().parent.parent / "scripts"
    if (checkout / BENCHMARKS["propagation"][0]).is_file():
        return checkout
    return Path(str(resources.files("clipapro._scripts")))


def run(args) -> int:
    import subprocess
    import sys

    script_name, _ = BENCHMARKS[args.benchmark]
    script = scripts_dir(args.scripts_dir) / script_name
    if not script.is_file():
        raise FileNotFoundError(f"benchmark script not found: {script} (pass --scripts-dir)")
    argv = list(args.script_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    cmd = [sys.executable, str(script), *argv]
    print("running: " + " ".join(cmd), file=sys.stderr, flush=True)
    # the script's own exit code: 0 ok, 2 for its argparse errors, 1 for failures
    return subprocess.call(cmd)
