"""Process entry points for the multi-process tests (importable by a forkserver)."""

from __future__ import annotations

import os
import sys

PRELOAD = ["torch", "open_clip", "torchvision", "clipapro.cli", "clipapro.clip", "clipapro.data",
           "clipapro.pseudo.pipeline", "clipapro.commands.pseudo_label", "clipapro.commands.train"]


def run_cli(argv, env=None, log=None):
    """Run ``clipapro`` with ``argv`` in this (child) process, as ``python -m clipapro`` would;
    ``env`` updates os.environ first (torchrun's RANK, WORLD_SIZE, ...); stdout goes to ``log``."""
    import torch

    os.environ.update(env or {})
    torch.set_num_threads(1)
    if log is not None:
        sys.stdout = open(log, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    from clipapro.cli import main

    code = main(list(argv))
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown: the parent only needs the exit code
