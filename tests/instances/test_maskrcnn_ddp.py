"""``train-instances`` under torchrun's environment contract: two gloo processes train one model, and a
DDP run stopped half-way and resumed ends with exactly the weights of an uninterrupted DDP run."""

from __future__ import annotations

import multiprocessing as mp
import socket

import pytest
import torch

from tests.pseudo import _workers

from ._fixtures import write_coco_fixture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ctx():
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(_workers.PRELOAD + ["clipapro.commands.train_instances", "clipapro.instances.train"])
    return c


def _ddp(ctx, argv, tmp_path, tag):
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        p = ctx.Process(target=_workers.run_cli, args=(argv, env, str(tmp_path / f"{tag}_rank{rank}.log")))
        p.start()
        procs.append(p)
    for p in procs:
        p.join(timeout=300)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    return codes


def test_ddp_runs_and_resumes_bit_identically(ctx, tmp_path):
    json_path, images = write_coco_fixture(tmp_path / "data", n_images=6)

    def argv(out, *extra):
        return ["train-instances", "--annotations", str(json_path), "--images", str(images), "--model",
                "maskrcnn_tiny", "--min-size", "64", "--max-size", "80", "--batch-size", "1", "--steps", "4",
                "--warmup-steps", "1", "--ckpt-every", "1", "--log-every", "1", "--workers", "0", "--device", "cpu",
                "--no-progress", "--out-dir", str(out), *extra]

    assert _ddp(ctx, argv(tmp_path / "full"), tmp_path, "full") == [0, 0]
    assert _ddp(ctx, argv(tmp_path / "half", "--stop-at", "2"), tmp_path, "a") == [0, 0]
    assert not (tmp_path / "half" / "model_final.pt").exists()
    assert _ddp(ctx, argv(tmp_path / "half"), tmp_path, "b") == [0, 0]
    a = torch.load(tmp_path / "full" / "model_final.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "half" / "model_final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "train-instances: step 4" in (tmp_path / "b_rank0.log").read_text()
