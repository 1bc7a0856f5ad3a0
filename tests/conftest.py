import os
import warnings

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_photo(path, height: int, width: int):
    """Write a tiny two-colour RGB PNG (a red rectangle on green) for the command tests; returns path."""
    from PIL import Image

    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = (40, 120, 60)
    arr[height // 4:height * 3 // 4, width // 4:width * 3 // 4] = (220, 60, 60)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def shared_data():
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip("../shared/data is not present")
    return path
