"""Numba helpers shared by the kernel modules of several subpackages."""

from ._jit import jit

__all__ = ["dot"]


@jit
def dot(a, b):
    """Return ``a . b`` of two vectors, as a plain loop (no temporary array, unlike ``(a * b).sum()``)."""
    total = 0.0
    for t in range(a.shape[0]):
        total += a[t] * b[t]
    return total
