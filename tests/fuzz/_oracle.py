"""What a fuzzed call must give: its reference result within tolerance, or a ValueError/TypeError
naming one of the call's arguments."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import Phase

#: Relative tolerance of the compiled core and the twins against the float64 references.
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}
#: Phases without shrinking, for calls in the guarded worker: shrinking a crash would restart the
#: worker at every step (minutes); the example as found is reported instead.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


def names_an_argument(message: str, names) -> bool:
    return any(name in message for name in names)


def assert_close(got: np.ndarray, ref: np.ndarray, dtype, scale: float, what: str, slack=None) -> None:
    """|got - ref| <= TOL * scale (+ ``slack``, per element), and got finite."""
    assert np.isfinite(got).all(), f"{what}: non-finite output {got}"
    bound = TOL[dtype] * max(scale, np.finfo(np.float64).tiny)
    if slack is not None:
        bound = bound + slack
    err = np.abs(got.astype(np.float64) - ref)
    bound = np.broadcast_to(bound, err.shape)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), (f"{what}: off by {err[worst]:.3g} (allowed {bound[worst]:.3g}) at {worst}: "
                                  f"got {got[worst]!r}, reference {ref[worst]!r}")

