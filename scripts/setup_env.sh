#!/usr/bin/env bash
# Set up clipapro on a fresh machine: a virtual environment in .venv with torch, then clipapro itself
# with all its extras and the test extra, installed through its declared dependencies (editable,
# which builds the compiled core). Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip setuptools wheel pybind11
# The highest torch/torchvision allowed here; the CUDA wheels run fine on CPU. Installed first so
# that the declared "torch" requirement is already met and pip takes nothing bigger.
$VPY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# clipapro with every extra: the declared dependency lists are what gets installed (CI checks them).
$VPY -m pip install -q -e ".[all,test]"
# Benchmark-only baselines (DenseCRF, OpenCV GrabCut); optional, the toolkit and its tests work without them.
$VPY -m pip install -q -e ".[bench]" || echo "setup: optional benchmark extras not installed"
$VPY -c "import clipapro, clipapro._ext as e; print('clipapro', clipapro.__version__, '| compiled core:', e.has_ext())"
