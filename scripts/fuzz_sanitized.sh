#!/usr/bin/env bash
# The fuzz tests (tests/fuzz) and the hostile-input regressions against a sanitizer build of the
# compiled core (AddressSanitizer + UndefinedBehaviorSanitizer), with a short budget. .ci/run
# calls it after the main test command.
#
# The sanitized extension is built into a temporary folder (the in-place build is left alone) and
# loaded through CLIPAPRO_EXT_PATH (clipapro/_ext.py). Python is not instrumented, so the
# sanitizer runtimes are preloaded; leaks are not reported (the interpreter keeps memory on
# purpose) and the first error aborts the run.
#
#   bash scripts/fuzz_sanitized.sh                      # uses .venv/bin/python
#   PYTHON=/path/to/python bash scripts/fuzz_sanitized.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CXX=${CXX:-g++}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clipapro-asan.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fuzz_sanitized: building the sanitized core in $tmp"
CLIPAPRO_SANITIZE=1 "$PY" setup.py -q build_ext --build-lib "$tmp/lib" --build-temp "$tmp/build" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log"; exit 1; }
ext=$(find "$tmp/lib" -name '_C*.so' | head -n 1)
[ -n "$ext" ] || { echo "fuzz_sanitized: no extension was built"; cat "$tmp/build.log"; exit 1; }

asan=$("$CXX" -print-file-name=libasan.so)
ubsan=$("$CXX" -print-file-name=libubsan.so)
for lib in "$asan" "$ubsan"; do
  [ -e "$lib" ] || { echo "fuzz_sanitized: $lib not found (install the compiler's sanitizer runtimes)"; exit 1; }
done

# The sanitizers must see the extension's own memory: check that this is the build in use.
LD_PRELOAD="$asan $ubsan" ASAN_OPTIONS=detect_leaks=0 CLIPAPRO_EXT_PATH="$ext" PYTHONPATH="$PWD" "$PY" -c "
import clipapro._ext as e, sys
m = e.get_ext()
assert m is not None and m.__file__ == sys.argv[1], (m, sys.argv[1])
print('fuzz_sanitized: using', m.__file__)" "$ext"

# Reports go to files: pytest captures stderr, and an aborting process would take them along.
mkdir -p "$tmp/reports"
export LD_PRELOAD="$asan $ubsan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:log_path=$tmp/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$tmp/reports/ubsan"
export CLIPAPRO_EXT_PATH="$ext"
export CLIPAPRO_FUZZ_PROFILE=${CLIPAPRO_FUZZ_PROFILE:-sanitize}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
"$PY" -m pytest -q -p no:cacheprovider tests/fuzz tests/propagation/test_hostile.py "$@" || status=$?
unset LD_PRELOAD
if compgen -G "$tmp/reports/*" >/dev/null; then
  echo "fuzz_sanitized: sanitizer reports:"
  for f in "$tmp"/reports/*; do echo "== $f"; cat "$f"; done
  [ "$status" -ne 0 ] || status=1
fi
echo "fuzz_sanitized: exit status $status"
exit "$status"
