#!/usr/bin/env bash
# Build the wheel and use it as an installed package, away from the source tree: the compiled core,
# the bundled class sets and templates (clipapro._prompts) and `clipapro bench` (clipapro._scripts)
# must all work from site-packages. The heavy dependencies (torch, ...) are borrowed from .venv through
# a path entry (their own .pth files, among them the editable install of this checkout, are not run),
# so the fresh environment holds nothing of the checkout but the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
VPY=${VPY:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VPY" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" . >"$work/wheel.log" 2>&1 || { cat "$work/wheel.log"; exit 1; }
"$VPY" -m venv "$work/venv"
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
borrowed=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$borrowed" > "$site/borrowed-from-dev-venv.pth"
"$work/venv/bin/python" -m pip install -q --no-deps --no-index "$work"/dist/clipapro-*.whl
cd "$work"  # nothing of the checkout on the path
"$work/venv/bin/python" - <<'PY'
import clipapro, clipapro._ext as e
from clipapro.prompts import get_class_set, prompts_dir
from clipapro.commands.bench import scripts_dir
assert "site-packages" in clipapro.__file__, clipapro.__file__
assert e.has_ext(), "the wheel has no compiled core"
assert len(get_class_set("voc21")) == 21 and "site-packages" in str(prompts_dir()), prompts_dir()
assert "site-packages" in str(scripts_dir()), scripts_dir()
print("wheel ok:", clipapro.__file__)
PY
"$work/venv/bin/python" -m clipapro bench propagation --sizes 64 --channels 1 3 --repeats 1 --no-baselines
