import pytest

from clipapro import _ext


@pytest.fixture(params=["compiled", "twin"])
def backend(request, monkeypatch):
    """Run a test with the compiled core and again with the pure-torch twins."""
    if request.param == "compiled":
        if _ext.get_ext() is None:
            pytest.skip("compiled core not built")
    else:
        monkeypatch.setitem(_ext._STATE, "ext", None)
    return request.param
