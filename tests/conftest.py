import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# property-based tests: a few derandomized examples in CI; HYPOTHESIS_PROFILE=thorough for a long random hunt
settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    """A fresh, fixed-seed generator for every test, so tests do not depend on their order."""
    return np.random.default_rng(12345)
