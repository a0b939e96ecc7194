"""The one place where numba options are chosen.

Kernel modules decorate with :data:`jit` (serial) or :data:`parallel_jit`, never with
``numba.njit`` directly, so every kernel is cached on disk and none uses ``fastmath``
(verdicts depend on exact comparisons and on NaN checks).
"""

import numba

__all__ = ["jit", "parallel_jit", "inline_jit", "prange", "set_num_threads", "get_num_threads"]

jit = numba.njit(cache=True, nogil=True, error_model="numpy")
parallel_jit = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
inline_jit = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
prange = numba.prange
set_num_threads = numba.set_num_threads
get_num_threads = numba.get_num_threads
