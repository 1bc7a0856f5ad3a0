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


@pytest.fixture(scope="session")
def guard():
    """A worker process for calls that crashed the interpreter before they were fixed."""
    from ..fuzz._guard import Guard

    g = Guard()
    yield g
    g.close()
