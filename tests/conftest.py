import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, fixed-seed generator for every test, so tests do not depend on their order."""
    return np.random.default_rng(12345)
