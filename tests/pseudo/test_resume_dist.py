"""Pseudo labelling killed (SIGKILL) at random points and resumed, and sharded over two gloo
processes (torchrun's environment contract), ends with exactly the files, byte for byte, of one
uninterrupted single-process run.

Child processes fork from a forkserver that imported torch/open_clip once (no OpenMP pool was
started there, so forking is safe); each child is a separate process killed for real.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import socket
import time
from pathlib import Path

import pytest
import torch

from clipapro.cli import main
from clipapro.pseudo import labels as L

from . import _workers
from .conftest import CLASSES, write_toy_folder

N_IMAGES = 12


def _snapshot(out: Path) -> dict:
    """Every file under ``out`` (temporary ones included) -> its bytes; the checksum records are
    compared as the set of their entries (their line order and file follow the ranks' timing)."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
             and L.CHECKSUMS not in p.parts}
    files[L.CHECKSUMS] = L.load_checksums(out)
    return files


def _argv(root, out, tiny_clip_args):
    return ["pseudo-label", "--dataset", "folder", "--root", str(root), "--classes", CLASSES,
            "--out-dir", str(out), "--soft", "--threshold", "0.3", *tiny_clip_args]


@pytest.fixture(scope="module")
def ctx():
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(_workers.PRELOAD)
    return c


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_clip_args):
    base = tmp_path_factory.mktemp("ref")
    root = write_toy_folder(base / "data", n=N_IMAGES, size=(48, 64), seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child processes
    try:
        assert main(_argv(root, base / "out", tiny_clip_args)) == 0
    finally:
        torch.set_num_threads(threads)
    snap = _snapshot(base / "out")
    assert sum(k.startswith("labels/") for k in snap) == N_IMAGES
    return root, snap


def _count(out: Path) -> int:
    return len(list((out / "labels").glob("*.png"))) if (out / "labels").is_dir() else 0


def test_killed_runs_resume_to_identical_outputs(ctx, reference, tiny_clip_args, tmp_path):
    root, expected = reference
    out = tmp_path / "out"
    argv = _argv(root, out, tiny_clip_args)
    rnd = random.Random()
    kills = 0
    # Targets in the first half leave at least N/2 images of work after each kill, so a fast machine
    # cannot finish the job inside the short random delay before SIGKILL lands.
    for target in sorted(rnd.sample(range(1, N_IMAGES // 2), 3)):
        proc = ctx.Process(target=_workers.run_cli, args=(argv,))
        proc.start()
        deadline = time.monotonic() + 60
        while proc.is_alive() and time.monotonic() < deadline:
            if _count(out) >= target:
                time.sleep(rnd.uniform(0.0, 0.01))  # land anywhere inside the next image's work
                proc.kill()  # SIGKILL: no cleanup handler runs
                break
            time.sleep(0.002)
        proc.join(60)
        kills += proc.exitcode == -9 and _count(out) < N_IMAGES  # killed while work was left
    assert kills >= 1
    partial = _count(out)
    assert partial < N_IMAGES
    final = ctx.Process(target=_workers.run_cli, args=(argv, None, str(tmp_path / "log.txt")))
    final.start()
    final.join(120)
    assert final.exitcode == 0
    assert f"{N_IMAGES - partial} written, {partial} already present" in (tmp_path / "log.txt").read_text()
    got = _snapshot(out)
    assert sorted(got) == sorted(expected)  # no leftover temporary files, nothing missing
    for name, data in expected.items():
        assert got[name] == data, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_make_the_same_set(ctx, reference, tiny_clip_args, tmp_path):
    root, expected = reference
    out = tmp_path / "out"
    port = str(_free_port())
    procs = []
    for rank in range(2):  # the environment torchrun gives its workers
        env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        p = ctx.Process(target=_workers.run_cli,
                        args=(_argv(root, out, tiny_clip_args), env, str(tmp_path / f"log{rank}.txt")))
        p.start()
        procs.append(p)
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert f"{N_IMAGES // 2} written, 0 already present on rank 0" in (tmp_path / "log0.txt").read_text()
    got = _snapshot(out)
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        assert got[name] == data, name


def test_refine_worker_threads_give_the_same_files(reference, tiny_clip_args, tmp_path):
    root, expected = reference
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_argv(root, tmp_path / "out", tiny_clip_args) + ["--refine-workers", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert _snapshot(tmp_path / "out") == expected
