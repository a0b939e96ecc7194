"""Matplotlib pictures of key sets and their hulls.

Import it explicitly (``import geomln.plotting``); ``import geomln`` never imports matplotlib, and
neither does importing this module: matplotlib is imported inside each function.

Sections
--------
Key sets
    :func:`plot_keys`: keys (selectable ones marked), their hull and queries, in 2-D, 3-D or a PCA view.

Every function draws into `ax` when given (``ax=None`` makes a new figure) and returns the Axes.
Artists carry a ``gid`` (``"selectable"``, ``"unselectable"``, ``"hull"``, ``"queries"``) so that
callers and tests can find them.
"""

import numpy as np

from ._validation import as_float_array, as_points
from .errors import InputError
from .hull import MAX_FACET_RANK, convex_hull
from .selectability import hull_vertices

__all__ = ["plot_keys"]

# ---------------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, *, three_d):
    """Return `ax` (checked to be 3-D when needed) or a new Axes on a new figure."""
    if ax is None:
        fig = _pyplot().figure()
        return fig.add_subplot(projection="3d") if three_d else fig.add_subplot()
    if three_d and getattr(ax, "name", None) != "3d":
        raise InputError(
            "`ax` must be a 3-D Axes (fig.add_subplot(projection='3d')) for 3-D keys; "
            f"got a {getattr(ax, 'name', type(ax).__name__)!r} Axes"
        )
    return ax


# ---------------------------------------------------------------------------------------------------
# key sets
# ---------------------------------------------------------------------------------------------------


def _selectable_mask(keys):
    """Keys that are hull vertices and occur once (a duplicated key can never be the strict argmax)."""
    n = keys.shape[0]
    hull = None
    try:
        hull = convex_hull(keys)
        vertices = hull.vertex_indices
    except InputError:
        if keys.shape[1] <= MAX_FACET_RANK:
            raise
        vertices = hull_vertices(keys)
    mask = np.zeros(n, dtype=bool)
    mask[vertices] = True
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    mask &= counts[inverse.reshape(-1)] == 1
    return mask, hull


def _as_queries(queries, d):
    q = as_float_array(queries, "queries")
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != d:
        raise InputError(f"`queries` must have shape (m, {d}) or ({d},) like the keys; got shape {q.shape}")
    return q


def _view_2d(keys):
    """Planar coordinates of the keys and the linear map applied to them (None for d <= 2)."""
    n, d = keys.shape
    if d == 1:
        return np.column_stack([keys[:, 0], np.zeros(n)]), None
    if d == 2:
        return keys, None
    centred = keys - keys.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    basis = np.zeros((2, d))
    basis[: min(2, vt.shape[0])] = vt[:2]
    return keys @ basis.T, basis


def _draw_hull_2d(ax, view):
    hull = convex_hull(view)
    if hull.affine_rank == 0:
        return
    ring = hull.facets[:, 0]  # the polygon's vertices in order, or the two endpoints of a segment
    closed = np.append(ring, ring[0]) if hull.affine_rank == 2 else ring
    ax.plot(view[closed, 0], view[closed, 1], color="C0", linewidth=1.0, gid="hull")


def _draw_hull_3d(ax, keys, hull):
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if hull.affine_rank == 3:
        polygons = keys[hull.facets]
    elif hull.affine_rank == 2:
        polygons = keys[hull.facets[:, 0]][None]
    elif hull.affine_rank == 1:
        ends = keys[hull.facets[:, 0]]
        ax.plot(ends[:, 0], ends[:, 1], ends[:, 2], color="C0", linewidth=1.0, gid="hull")
        return
    else:
        return
    surface = Poly3DCollection(polygons, facecolor="C0", edgecolor="C0", linewidth=0.5, alpha=0.15)
    surface.set_gid("hull")
    ax.add_collection3d(surface)


def plot_keys(keys, *, queries=None, hull=True, ax=None):
    """Draw a key set, marking which keys are selectable, with its convex hull and optional queries.

    Selectable keys (hull vertices that occur once: some query makes each of them the strict argmax of
    ``q . k``) are drawn as filled circles, the other keys (interior, on an edge or facet, or
    duplicated) as grey crosses, as in Figure 1 of Brody et al. (2023).

    Parameters
    ----------
    keys : array_like, shape (n, d)
        The keys. ``d = 2`` and ``d = 3`` are drawn as they are (``d = 1`` on the x axis); for ``d > 3``
        the keys are drawn in the plane of their first two principal directions (PCA by SVD of the
        centred keys), mapped linearly as ``keys @ basis.T`` so that the origin stays at the origin.
        Selectability is always decided in the original ``d`` dimensions.
    queries : array_like, shape (m, d) or (d,), optional
        Queries drawn as arrows from the origin (mapped like the keys in the PCA view).
    hull : bool, default True
        Draw the convex hull: a polygon in 2-D, a translucent triangulated surface in 3-D, and in the
        PCA view the hull of the projected keys (the shadow of the hull).
    ax : matplotlib Axes, optional
        Axes to draw into; a 3-D Axes (``projection="3d"``) for ``d = 3``. None makes a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. Its artists have gids ``"selectable"``, ``"unselectable"``, ``"hull"`` and
        ``"queries"``.

    Raises
    ------
    InputError
        If `keys` or `queries` are malformed, or `ax` is not 3-D for 3-D keys.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import geomln.plotting
    >>> keys = [[0, 0], [2, 0], [0, 2], [0.5, 0.5], [1, 1]]
    >>> ax = geomln.plotting.plot_keys(keys, queries=[[1, 1]])
    >>> [c.get_gid() for c in ax.collections]
    ['selectable', 'unselectable', 'queries']
    >>> ax.collections[1].get_offsets().data.tolist()  # interior and edge keys
    [[0.5, 0.5], [1.0, 1.0]]
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    k = as_points(keys, "keys")
    n, d = k.shape
    q = None if queries is None else _as_queries(queries, d)
    selectable, key_hull = _selectable_mask(k)
    three_d = d == 3
    ax = _axes(ax, three_d=three_d)

    if three_d:
        for mask, gid, style in (
            (selectable, "selectable", {"marker": "o", "color": "C0"}),
            (~selectable, "unselectable", {"marker": "x", "color": "0.45"}),
        ):
            pts = k[mask]
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], label=gid, gid=gid, **style)
        if hull and key_hull is not None:
            _draw_hull_3d(ax, k, key_hull)
        extent = [k, np.zeros((1, 3))]
        if q is not None:
            ax.quiver(
                np.zeros(len(q)),
                np.zeros(len(q)),
                np.zeros(len(q)),
                q[:, 0],
                q[:, 1],
                q[:, 2],
                color="C3",
                gid="queries",
            )
            extent.append(q)
        lo, hi = np.min(np.vstack(extent), axis=0), np.max(np.vstack(extent), axis=0)
        pad = 0.05 * np.maximum(hi - lo, 1e-12)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_zlim(lo[2] - pad[2], hi[2] + pad[2])
        ax.set_xlabel("$k_1$")
        ax.set_ylabel("$k_2$")
        ax.set_zlabel("$k_3$")
    else:
        view, basis = _view_2d(k)
        for mask, gid, style in (
            (selectable, "selectable", {"marker": "o", "color": "C0", "zorder": 3}),
            (~selectable, "unselectable", {"marker": "x", "color": "0.45", "zorder": 3}),
        ):
            ax.scatter(view[mask, 0], view[mask, 1], label=gid, gid=gid, **style)
        if hull:
            _draw_hull_2d(ax, np.ascontiguousarray(view))
        if q is not None:
            if basis is not None:
                qv = q @ basis.T
            elif d == 1:
                qv = np.column_stack([q[:, 0], np.zeros(len(q))])
            else:
                qv = q
            ax.quiver(
                np.zeros(len(qv)),
                np.zeros(len(qv)),
                qv[:, 0],
                qv[:, 1],
                angles="xy",
                scale_units="xy",
                scale=1,
                color="C3",
                gid="queries",
            )
            ax.update_datalim(np.vstack([qv, np.zeros((1, 2))]))
            ax.autoscale_view()
        ax.set_aspect("equal", adjustable="datalim")
        if basis is None:
            ax.set_xlabel("$k_1$")
            ax.set_ylabel("$k_2$" if d == 2 else "")
        else:
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize="small")
    return ax
