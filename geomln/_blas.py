"""One BLAS thread for small dense linear algebra.

OpenBLAS splits even a 32 x 32 eigendecomposition over its threads, and on a busy machine (or right after
numba's threads ran) waking them costs far more than the work: ``np.linalg.eigh`` of a 32 x 32 matrix took
24 ms with two threads on a loaded 2-core machine, 1.4 ms after a parallel numba kernel, and 0.26 ms with
one thread. The engine runs its d x d problems inside :func:`one_blas_thread`, and kernels that call BLAS from
numba's threads run inside it too.
"""

import sys
from functools import cache

__all__ = ["one_blas_thread"]


@cache
def _controller(scipy_blas):
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the BLAS libraries loaded now: once per `scipy_blas`, ~1 ms


def one_blas_thread():
    """Return a context manager that limits numpy's BLAS to one thread (about 10 us to enter and leave).

    Examples
    --------
    >>> import numpy as np
    >>> from geomln._blas import one_blas_thread
    >>> with one_blas_thread():
    ...     values = np.linalg.eigvalsh(np.eye(3))
    >>> values.tolist()
    [1.0, 1.0, 1.0]
    """
    # numba's np.dot calls scipy's BLAS, a library of its own, loaded with the first such kernel
    return _controller("scipy.linalg.cython_blas" in sys.modules).limit(limits=1, user_api="blas")
