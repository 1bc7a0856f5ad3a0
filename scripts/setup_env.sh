#!/usr/bin/env bash
# Set up clipapro on a fresh machine: a virtual environment in .venv with torch, the rest of the
# stack, the test/benchmark extras, and clipapro itself (editable, which builds the compiled core).
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip setuptools wheel
# The highest torch/torchvision allowed here; the CUDA wheels run fine on CPU.
$VPY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
$VPY -m pip install -q open_clip_torch transformers datasets matplotlib pillow tqdm safetensors \
    pybind11 pytest hypothesis scikit-image scipy
# Benchmark-only extras; optional, the toolkit and its tests work without them.
$VPY -m pip install -q pydensecrf2 opencv-python-headless || echo "setup: optional benchmark extras not installed"
$VPY -m pip install -q --no-deps -e .
$VPY -c "import clipapro, clipapro._ext as e; print('clipapro', clipapro.__version__, '| compiled core:', e.has_ext())"
