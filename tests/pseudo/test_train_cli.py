"""``clipapro train`` end to end: on pseudo labels from ``clipapro pseudo-label``, under two gloo ranks
with exact resume, and bad configurations refused before any work."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket

import pytest
import torch

from clipapro.cli import main

from . import _workers
from .conftest import CLASSES


def _train_argv(root, out, *extra):
    return ["train", "--dataset", "folder", "--root", str(root), "--classes", CLASSES,
            "--student", "tiny_fcn", "--steps", "4", "--batch-size", "2", "--crop-size", "32", "32",
            "--workers", "0",
            "--ckpt-every", "2", "--log-every", "1", "--no-progress", "--out", str(out), *extra]


def test_train_on_pseudo_labels_with_eval(toy_root, tiny_clip_args, tmp_path, capsys):
    pl = tmp_path / "pl"
    assert main(["pseudo-label", "--dataset", "folder", "--root", str(toy_root), "--classes", CLASSES,
                 "--out-dir", str(pl), "--soft", *tiny_clip_args]) == 0
    out = tmp_path / "run"
    assert main(_train_argv(toy_root, out, "--pseudo-dir", str(pl), "--val-split", "all", "--eval-every", "4",
                            "--apro-weight", "0.5", "--apro-opt", "iterations=2", "--soft-weight", "0.5")) == 0
    assert "mIoU" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["pseudo_hash"] == json.loads((pl / "manifest.json").read_text())["config_hash"]
    assert json.loads((out / "metrics.json").read_text())["eval"]["mIoU"] >= 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002.pt", "step_0000004.pt"]


@pytest.mark.parametrize("case", ["dataset", "student", "pseudo_missing", "pseudo_incomplete", "out",
                                  "apro_opt", "no_soft"])
def test_bad_training_configuration(case, toy_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("clipapro.pseudo.trainjob.train_student",
                        lambda *a, **k: pytest.fail("training started before the checks"))
    pl = tmp_path / "pl"
    (pl / "labels").mkdir(parents=True)
    (pl / "manifest.json").write_text(json.dumps({"classes": ["background", "red", "green"]}))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = _train_argv(toy_root, tmp_path / "run", "--pseudo-dir", str(pl))
    expect = {"dataset": "unknown dataset", "student": "unknown student",
              "pseudo_missing": "manifest.json not found",
              "pseudo_incomplete": "8 of 8 training images have no pseudo label", "out": "not writable",
              "apro_opt": "--apro-opt", "no_soft": "made without --soft"}[case]
    if case == "dataset":
        argv[argv.index("folder")] = "nope"
    elif case == "student":
        argv[argv.index("tiny_fcn")] = "resnet9000"
    elif case == "pseudo_missing":
        argv[argv.index(str(pl))] = str(tmp_path / "nowhere")
    if case in ("out", "apro_opt", "no_soft"):  # complete pseudo labels, so that only the tested error remains
        for lab in (toy_root / "masks").iterdir():
            (pl / "labels" / lab.name).write_bytes(lab.read_bytes())
    if case == "out":
        argv[argv.index(str(tmp_path / "run"))] = str(blocker / "run")
    elif case == "apro_opt":
        argv += ["--apro-weight", "1", "--apro-opt", "zeta_gg=3"]
    elif case == "no_soft":
        argv += ["--soft-weight", "1"]
    assert main(argv) == 2
    assert expect in capsys.readouterr().err


@pytest.fixture(scope="module")
def ctx():
    c = mp.get_context("forkserver")
    c.set_forkserver_preload(_workers.PRELOAD)
    return c


def _ddp(ctx, argv, logdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = []
    for rank in range(2):
        env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        p = ctx.Process(target=_workers.run_cli, args=(argv, env, str(logdir / f"log{rank}.txt")))
        p.start()
        procs.append(p)
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


def test_ddp_gloo_training_resumes_bit_identically(ctx, toy_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _ddp(ctx, _train_argv(toy_root, a, "--clean-labels", "--device", "cpu"), tmp_path) == [0, 0]
    assert _ddp(ctx, _train_argv(toy_root, b, "--clean-labels", "--device", "cpu", "--stop-at", "2"),
                tmp_path) == [0, 0]
    assert not (b / "model_final.pt").exists()
    assert _ddp(ctx, _train_argv(toy_root, b, "--clean-labels", "--device", "cpu"), tmp_path) == [0, 0]
    wa = torch.load(a / "model_final.pt", weights_only=False)["model"]
    wb = torch.load(b / "model_final.pt", weights_only=False)["model"]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # the checkpoint holds one RNG state per rank
    state = torch.load(b / "checkpoints" / "step_0000004.pt", weights_only=False)
    assert len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])


def test_sigterm_checkpoints_and_resume_continues(ctx, toy_root, tmp_path):
    import time

    out = tmp_path / "run"
    argv = _train_argv(toy_root, out, "--clean-labels", "--device", "cpu")
    argv[argv.index("--steps") + 1] = "100000"
    argv[argv.index("--ckpt-every") + 1] = "50000"
    proc = ctx.Process(target=_workers.run_cli, args=(argv, None, str(tmp_path / "log.txt")))
    proc.start()
    log = out / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.01)
    proc.terminate()  # SIGTERM, as a cluster scheduler's preemption
    proc.join(60)
    assert proc.exitcode == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["preempted"] is True
    step = records[-1]["step"]
    assert 3 <= step < 100000
    assert (out / "checkpoints" / f"step_{step:07d}.pt").is_file()
    assert "rerun the same command to resume" in (tmp_path / "log.txt").read_text()
    assert main(argv + ["--stop-at", str(step + 2)]) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-2:] == [step + 1, step + 2]
