"""A child process that runs propagation calls for the tests, so that a crash kills it, not pytest.

Protocol (see _guard.py): length-prefixed pickles on stdin/stdout. A request is ``(op, backend,
kwargs)``: ``op`` names a function of clipapro.propagation.functional, tensors travel as tensors
(a pickled tensor keeps its strides: channels-last and strided views arrive as they were sent) or
numpy arrays, and a KruskalTree as a dict of arrays (so that corrupted ones can be sent). The reply
is ``("ok", result)`` with numpy arrays, or ``("error", exception type name, message)``.
``backend`` is "compiled" or "twin".
Run as a script: ``python tests/fuzz/_worker.py``.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys


def _read(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


def _write(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _tensors(kwargs: dict) -> dict:
    import numpy as np
    import torch

    from clipapro.propagation import KruskalTree

    out = {}
    for key, value in kwargs.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        elif isinstance(value, dict) and value.get("kind") == "KruskalTree":
            value = KruskalTree(*(torch.from_numpy(value[k]) for k in ("parent", "height", "edges", "edge_weights")),
                                tuple(value["size"]))
        out[key] = value
    return out


def _run(op: str, backend: str, kwargs: dict):
    import torch

    from clipapro import _ext
    from clipapro.propagation import functional

    saved = _ext._STATE.get("ext")
    if backend == "twin":
        _ext._STATE["ext"] = None
    try:
        result = getattr(functional, op)(**_tensors(kwargs))
    finally:
        _ext._STATE["ext"] = saved
    if isinstance(result, torch.Tensor):
        return result.numpy()
    return {k: getattr(result, k).numpy() for k in ("parent", "height", "edges", "edge_weights")}


def _limit_memory() -> None:
    """Cap the heap at half the machine (16 GiB at most): a runaway allocation then fails in here
    instead of waking the OOM killer. Not under AddressSanitizer, whose shadow memory counts."""
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    try:
        import resource

        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        cap = min(phys // 2, 16 << 30)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not Linux
        pass


def main() -> None:
    _limit_memory()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not corrupt the protocol
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)
    import warnings

    warnings.simplefilter("ignore")
    from clipapro import _ext

    _ext.get_ext()
    _write(stdout, ("ready", _ext.has_ext()))
    while (request := _read(stdin)) is not None:
        op, backend, kwargs = request
        try:
            reply = ("ok", _run(op, backend, kwargs))
        except Exception as err:  # noqa: BLE001 - the test decides which types are acceptable
            reply = ("error", type(err).__name__, str(err))
        _write(stdout, reply)


if __name__ == "__main__":
    main()
