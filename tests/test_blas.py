import os
import subprocess
import sys

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


def test_one_blas_thread_also_limits_scipys_blas_loaded_later():
    # numba's np.dot calls scipy's BLAS, loaded with the first such kernel: after a first use of the limit
    script = (
        "from threadpoolctl import threadpool_info\n"
        "from geomln._blas import one_blas_thread\n"
        "with one_blas_thread():\n"
        "    pass\n"
        "import scipy.linalg.cython_blas\n"
        "with one_blas_thread():\n"
        "    print(sorted({lib['num_threads'] for lib in threadpool_info() if lib['user_api'] == 'blas'}))\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[1]"
