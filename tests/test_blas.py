import numpy as np
from threadpoolctl import threadpool_info

from geomln._blas import one_blas_thread


def _numpy_blas_threads():
    numpy_blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]
    assert numpy_blas, threadpool_info()
    return [lib["num_threads"] for lib in numpy_blas]


def test_one_blas_thread_limits_numpy_blas_and_restores_it():
    before = _numpy_blas_threads()
    with one_blas_thread():
        assert _numpy_blas_threads() == [1] * len(before)
        matrix = np.random.default_rng(0).standard_normal((40, 40))
        values = np.linalg.eigvalsh(matrix @ matrix.T)
    assert _numpy_blas_threads() == before
    assert (values > -1e-9).all()
