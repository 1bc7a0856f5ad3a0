"""Checkpoints load with weights_only=True (a planted pickle cannot run), RNG states round-trip, and a
truncated newest checkpoint falls back to the previous one with a warning naming both."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from clipapro.pseudo import checkpoint as ckpt


def _objects(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / 10)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    return {"model": model, "optimizer": opt, "scheduler": sched, "scaler": None}


def _save(tmp_path, step, objs):
    return ckpt.save_checkpoint(tmp_path, step=step, config={"a": [1, 2]}, config_hash="h", keep=3, **objs)


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    objs = _objects()
    path = _save(tmp_path, 7, objs)
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    fresh = _objects(seed=1)
    step = ckpt.load_latest_checkpoint(tmp_path, config_hash="h", **fresh)
    assert step == 7 and torch.load(path, weights_only=True)["step"] == 7
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect
    assert torch.equal(fresh["model"].weight, objs["model"].weight)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_planted_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / "checkpoints" / "step_0000009.pt", "wb") as f:
        pickle.dump({"step": 9, "model": _Payload()}, f)
    with pytest.raises(ValueError) as err:
        ckpt.load_latest_checkpoint(tmp_path, config_hash="h", **_objects())
    msg = str(err.value)
    assert not (tmp_path / "PWNED").exists()
    assert "step_0000009.pt" in msg and "pickled Python objects" in msg and "\n" not in msg
    assert "weights_only=False" not in msg


def test_truncated_newest_falls_back_to_the_previous_with_a_warning(tmp_path):
    objs = _objects()
    _save(tmp_path, 2, objs)
    newest = _save(tmp_path, 4, objs)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match=r"step_0000004\.pt.*step_0000002\.pt|step_0000002\.pt.*step_0000004\.pt"):
        step = ckpt.load_latest_checkpoint(tmp_path, config_hash="h", **_objects(seed=2))
    assert step == 2


def test_other_configuration_is_refused_not_skipped(tmp_path):
    _save(tmp_path, 2, _objects())
    with pytest.raises(ValueError, match="different training configuration"):
        ckpt.load_latest_checkpoint(tmp_path, config_hash="other", **_objects())
    assert ckpt.load_latest_checkpoint(tmp_path / "nothing", config_hash="h", **_objects()) is None
