"""Fuzz tests: Hypothesis with a fixed, derandomised budget, and a guarded worker process.

Profiles (``CLIPAPRO_FUZZ_PROFILE``): ``default`` (the test suite: well under a minute for all
fuzz tests), ``sanitize`` (a short budget for the sanitizer build, scripts/fuzz_sanitized.sh) and
``long`` (a deeper search to run by hand). The same examples run every time (derandomize), and
no example database is written.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from ._guard import Guard
from ._oracle import NO_SHRINK

_COMMON = dict(derandomize=True, database=None, deadline=None, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", max_examples=60, **_COMMON)
# Under the sanitizer a failure is a crash report: the example as found is enough.
settings.register_profile("sanitize", max_examples=25, phases=NO_SHRINK, **_COMMON)
settings.register_profile("long", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("CLIPAPRO_FUZZ_PROFILE", "default"))


@pytest.fixture(scope="session")
def guard():
    g = Guard()
    yield g
    g.close()
