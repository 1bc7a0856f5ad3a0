"""Runs risky propagation calls in a child process (_worker.py): a signal death there (SIGSEGV,
SIGABRT from a sanitizer) becomes a test failure naming the call, and pytest survives it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from . import _worker

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


class WorkerDied(AssertionError):
    """The child died (or hung) running a call."""


class Guard:
    """One worker process, restarted after a death. ``call`` returns ``("ok", result)`` or
    ``("error", type name, message)``, and raises WorkerDied when the child dies or times out."""

    def __init__(self, timeout: float = 120.0):
        self.timeout = timeout
        self.proc = None
        self.compiled = None

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env)
        ready = self._reply("starting the worker")
        self.compiled = ready[1]

    def _reply(self, what: str):
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], self.timeout)[0]:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            raise WorkerDied(f"the worker hung for {self.timeout:.0f} s {what}")
        reply = _worker._read(self.proc.stdout)
        if reply is None:
            code = self.proc.wait()
            self.proc = None
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise WorkerDied(f"the worker died ({how}) {what}")
        return reply

    def call(self, op: str, backend: str = "compiled", **kwargs):
        if self.proc is None:
            self._start()
        what = f"running {op}(backend={backend!r}, {describe(kwargs)})"
        try:
            _worker._write(self.proc.stdin, (op, backend, kwargs))
        except BrokenPipeError:
            self.proc = None
            raise WorkerDied(f"the worker was gone before {what}") from None
        return self._reply(what)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


def describe(kwargs: dict) -> str:
    """Arguments in a line: arrays by shape and dtype, trees by their parts."""
    parts = []
    for key, value in kwargs.items():
        if hasattr(value, "stride") and callable(value.stride):
            parts.append(f"{key}={value.dtype}{tuple(value.shape)} strides {value.stride()}")
        elif hasattr(value, "shape"):
            parts.append(f"{key}={value.dtype}{tuple(value.shape)}")
        elif isinstance(value, dict):
            parts.append(f"{key}=KruskalTree(parent={value['parent'].tolist()}, height={value['height'].tolist()})")
        else:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)
