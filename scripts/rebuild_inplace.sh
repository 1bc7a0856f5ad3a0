#!/usr/bin/env bash
# Rebuild clipapro._C and swap it in atomically (rename), so processes that have the old one loaded
# keep running. For developers iterating on csrc/; `pip install -e .` does the same from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
"$PY" setup.py -q build_ext --build-lib "$tmp" --build-temp "$tmp/obj" >/dev/null
so=$(cd "$tmp/clipapro" && ls _C*.so)
cp "$tmp/clipapro/$so" "clipapro/.$so.new"
mv -f "clipapro/.$so.new" "clipapro/$so"
rm -rf "$tmp"
echo "rebuilt clipapro/$so"
