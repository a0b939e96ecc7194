"""Matplotlib pictures of key sets and their hulls.

Import it explicitly (``import geomln.plotting``); ``import geomln`` never imports matplotlib, and
neither does importing this module: matplotlib is imported inside each function.

Sections
--------
Key sets
    :func:`plot_keys`: keys (selectable ones marked), their hull and queries, in 2-D, 3-D or a PCA view.
Key reports
    :func:`plot_unselectable_by_layer_head`, :func:`plot_slice_metric` (any per-slice metric as a heatmap),
    :func:`plot_causal_curve` (fraction of keys still selectable per prefix length).

Every function draws into `ax` when given (``ax=None`` makes a new figure) and returns the Axes.
Artists carry a ``gid`` (``"selectable"``, ``"unselectable"``, ``"hull"``, ``"queries"``) so that
callers and tests can find them.
"""

import numpy as np

from ._validation import as_float_array, as_points
from .engine.selectability import hull_vertices
from .errors import InputError
from .hull.convex import MAX_FACET_RANK, convex_hull

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


# ---------------------------------------------------------------------------------------------------
# key reports
# ---------------------------------------------------------------------------------------------------

__all__ += ["plot_unselectable_by_layer_head"]


def plot_unselectable_by_layer_head(report, *, fixed_scale=False, ax=None):
    """Heatmap of the fraction of unselectable keys per (layer, head) of a :class:`~geomln.KeyReport`.

    Parameters
    ----------
    report : KeyReport
        From :func:`~geomln.analyze_keys`; sequences and other labels are pooled
        (``sum(n_unselectable) / sum(n)``). A report without a ``head`` (or ``layer``) label gives a single
        column (or row).
    fixed_scale : bool
        Colour scale from 0 to 1 (comparable across figures) instead of 0 to the largest fraction.
    ax : matplotlib Axes, optional
        Axes to draw into; None makes a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The image (gid ``"unselectable_fraction"``) is ``ax.images[0]``; its array is the plotted grid. Each
        cell is annotated with its percentage when the grid has at most 400 cells.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, geomln
    >>> from geomln.plotting import plot_unselectable_by_layer_head
    >>> keys = geomln.KeyArray.from_array(np.random.default_rng(0).normal(size=(2, 3, 12, 2)),
    ...                                   axes="layer,head,token,dim")
    >>> ax = plot_unselectable_by_layer_head(geomln.analyze_keys(keys))
    >>> ax.images[0].get_array().shape
    (2, 3)
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")

    See Also
    --------
    plot_slice_metric : the same heatmap for any per-slice metric and any pair of labels.
    """
    name = report.meta.get("name") or "keys"
    extra = f", {report.meta['normalization']}" if report.meta.get("normalization") else ""
    return plot_slice_metric(report, "fraction_unselectable", rows="layer", cols="head", fixed_scale=fixed_scale,
                             label="% unselectable", title=f"unselectable {name}{extra} (% per cell)",
                             gid="unselectable_fraction", ax=ax)


# ---------------------------------------------------------------------------------------------------
# Monte Carlo of unselectable keys (geomln.estimate_unselectable)
# ---------------------------------------------------------------------------------------------------

__all__ += ["plot_unselectable_heatmap", "plot_fraction_vs_n"]

_MONTECARLO_METRICS = {
    "any_unselectable": "P(at least one key unselectable)",
    "fraction": "mean fraction of unselectable keys",
}


def _cell_edges(values):
    """Edges of cells centred on sorted `values` (half-way between neighbours; width 1 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    middles = (values[1:] + values[:-1]) / 2.0
    return np.concatenate([[2.0 * values[0] - middles[0]], middles, [2.0 * values[-1] - middles[-1]]])


def plot_unselectable_heatmap(
    result, *, metric="any_unselectable", normalization=None, distribution=None, ax=None
):
    """Draw a Monte Carlo table as a heatmap over (d, n), like Figure 1c/1d of Brody, Alon & Yahav (2023).

    Parameters
    ----------
    result : MonteCarloResult
        From :func:`geomln.estimate_unselectable`.
    metric : {"any_unselectable", "fraction"}
        The probability that at least one key is unselectable (what the paper's heatmaps show), or the
        mean fraction of unselectable keys.
    normalization, distribution : str, optional
        Which part of the table to draw; may be omitted when the table holds only one.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made when None.

    Returns
    -------
    matplotlib Axes
        With a :class:`~matplotlib.collections.QuadMesh` whose array holds the values (n along the
        rows, d along the columns; missing cells masked), colour scale 0..1 and a colour bar.

    Raises
    ------
    InputError
        If `metric` is unknown, or `normalization`/`distribution` is missing from the table or must be
        chosen (the message lists the choices).

    See Also
    --------
    plot_fraction_vs_n : the fraction against n with the exact theory.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import geomln
    >>> from geomln.plotting import plot_unselectable_heatmap
    >>> result = geomln.estimate_unselectable([5, 10, 20], [2, 3], trials=10, workers=1, progress=False)
    >>> ax = plot_unselectable_heatmap(result)
    >>> ax.collections[0].get_array().shape
    (3, 2)
    """
    from ._validation import as_choice

    as_choice(metric, "metric", tuple(_MONTECARLO_METRICS))
    ns, ds, values = result.pivot(metric, distribution=distribution, normalization=normalization)
    chosen = result.select(distribution=distribution, normalization=normalization)[0]
    ax = _axes(ax, three_d=False)
    mesh = ax.pcolormesh(
        _cell_edges(ds),
        _cell_edges(ns),
        np.ma.masked_invalid(values),
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
        shading="flat",
    )
    ax.figure.colorbar(mesh, ax=ax, label=_MONTECARLO_METRICS[metric])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("d (key dimension)")
    ax.set_ylabel("n (number of keys)")
    ax.set_title(f"{chosen.distribution}, {chosen.normalization} ({chosen.trials} trials)", fontsize=10)
    return ax


def plot_fraction_vs_n(result, *, d=None, theory=True, normalization=None, distribution=None, ax=None):
    """Plot the mean fraction of unselectable keys against n, one curve per d, with the exact theory.

    Parameters
    ----------
    result : MonteCarloResult
        From :func:`geomln.estimate_unselectable`.
    d : int or sequence of int, optional
        Which dimensions to draw (default: all in the table).
    theory : bool, default True
        Overlay the exact expectation as a dashed curve where it is known: Gaussian keys
        (:func:`geomln.unselectable_fraction_gaussian`, over every integer n of the range), their
        projection (the same in dimension d - 1), and the table's ``theory_fraction`` column elsewhere
        (0 for keys on a sphere); nothing for other distributions.
    normalization, distribution : str, optional
        Which part of the table to draw; may be omitted when the table holds only one.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made when None.

    Returns
    -------
    matplotlib Axes
        One line per d (markers at the Monte Carlo means; shaded 95% intervals with ``gid``
        ``"interval"``, left out at cells whose mean is 0) and, with `theory`, one dashed line per
        d with ``gid`` ``"theory"``. The legend names every d, "exact theory" and "95 % interval"; the
        y-range runs from 0 to just above the highest value drawn (at least 0.05, at most 1.02).

    Raises
    ------
    InputError
        If a requested `d` is not in the table (listing those that are), or the normalization or
        distribution is missing or must be chosen.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import geomln
    >>> from geomln.plotting import plot_fraction_vs_n
    >>> result = geomln.estimate_unselectable([5, 10, 20], [2, 3], trials=10, workers=1, progress=False)
    >>> ax = plot_fraction_vs_n(result, d=3)
    >>> [line.get_gid() for line in ax.get_lines()]
    ['monte carlo', 'theory']
    """
    from ._validation import as_choice
    from .montecarlo.theory import unselectable_fraction_gaussian

    ns, ds, mean = result.pivot("fraction", distribution=distribution, normalization=normalization)
    low = result.pivot("fraction_low", distribution=distribution, normalization=normalization)[2]
    high = result.pivot("fraction_high", distribution=distribution, normalization=normalization)[2]
    exact = result.pivot("theory_fraction", distribution=distribution, normalization=normalization)[2]
    chosen = result.select(distribution=distribution, normalization=normalization)[0]
    available = [int(value) for value in ds]
    wanted = available if d is None else [d] if np.ndim(d) == 0 else list(d)
    for value in wanted:
        as_choice(value, "d", available)
    ax = _axes(ax, three_d=False)
    dense_n = np.arange(int(ns[0]), int(ns[-1]) + 1)
    shift = {"none": 0, "projection": 1}.get(chosen.normalization)
    top = 0.0  # highest value drawn, for the y-range
    for value in wanted:
        j = available.index(value)
        seen = ~np.isnan(mean[:, j])
        line = ax.plot(
            ns[seen], mean[seen, j], marker="o", markersize=3, label=f"d = {value}", gid="monte carlo"
        )[0]
        top = max(top, float(np.max(mean[seen, j], initial=0.0)))
        nonzero = mean[seen, j] > 0  # cells whose values are all 0: their intervals would stack up at 0
        if nonzero.any():
            ax.fill_between(ns[seen], low[seen, j], high[seen, j], where=nonzero, color=line.get_color(),
                            alpha=0.2, linewidth=0, gid="interval")
            top = max(top, float(np.max(high[seen, j][nonzero])))
        if not theory:
            continue
        if chosen.distribution == "gaussian" and shift is not None and value - shift >= 1:
            curve = unselectable_fraction_gaussian(dense_n, value - shift)
            ax.plot(dense_n, curve, linestyle="--", color=line.get_color(), gid="theory")
            top = max(top, float(np.max(curve)))
        elif np.isfinite(exact[seen, j]).any():
            known = seen & np.isfinite(exact[:, j])
            ax.plot(ns[known], exact[known, j], linestyle="--", color=line.get_color(), gid="theory")
            top = max(top, float(np.max(exact[known, j])))
    ax.set_xlabel("n (number of keys)")
    ax.set_ylabel("fraction of unselectable keys")
    upper = min(1.02, max(0.05, 1.08 * top))
    ax.set_ylim(-0.02 * upper, upper)
    ax.set_title(f"{chosen.distribution}, normalization: {chosen.normalization}")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    if any(line.get_gid() == "theory" for line in ax.get_lines()):
        handles.append(Line2D([], [], color="gray", linestyle="--", label="exact theory"))
    if any(c.get_gid() == "interval" for c in ax.collections):
        handles.append(Patch(color="gray", alpha=0.2, linewidth=0, label="95 % interval"))
    ax.legend(handles=handles, fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------------------
# per-slice metrics and causal curves of a KeyReport
# ---------------------------------------------------------------------------------------------------

__all__ += ["plot_slice_metric", "plot_causal_curve"]


def _grid_labels(report, rows, cols):
    """Default (rows, cols) labels: layer x head when the report has them, else its first two labels."""
    names = [n for n in dict.fromkeys(k for r in report.rows for k in r["labels"])]
    rows = rows or ("layer" if "layer" in names else next((n for n in names if n != "head"), None))
    cols = cols or ("head" if "head" in names else next((n for n in names if n != rows), None))
    return rows, cols


def _tick_labels(values):
    return ["all" if v is None else str(v) for v in values]


def plot_slice_metric(report, metric="fraction_unselectable", *, rows=None, cols=None, fixed_scale=False,
                      vmin=None, vmax=None, label=None, title=None, gid="slice_metric", ax=None):
    """Heatmap of any per-slice metric of a :class:`~geomln.KeyReport`, pooled over the other labels.

    Parameters
    ----------
    report : KeyReport
        From :func:`~geomln.analyze_keys`.
    metric : str or callable
        A scalar row field (``"fraction_unselectable"``, ``"causal_pair_fraction"``, ``"min_max_attention"``,
        ...) or ``row -> float``; pooled as by :meth:`~geomln.KeyReport.metric_grid` (key-weighted mean).
    rows, cols : str, optional
        Labels along each side. Default ``layer`` x ``head``; for reports without them (plain arrays, batches
        of sequences) the report's first two labels, each axis titled with its label name, and a single row
        or column ticked ``all`` where a label is missing.
    fixed_scale : bool
        Colour scale from 0 to 1 (for fractions; comparable across figures). Overrides `vmin` and `vmax`.
    vmin, vmax : float, optional
        Colour scale limits (default: 0 or the smallest value, and the largest value).
    label, title : str, optional
        Colour bar label (default: the metric's name) and title.
    gid : str
        ``gid`` of the image.
    ax : matplotlib Axes, optional
        Axes to draw into; None makes a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.images[0]`` holds the plotted grid; cells are annotated (in % for a 0-1 scale) when there are
        at most 400.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, geomln
    >>> from geomln.plotting import plot_slice_metric
    >>> keys = geomln.KeyArray.from_array(np.random.default_rng(0).normal(size=(3, 12, 2)),
    ...                                   axes="batch,token,dim")
    >>> ax = plot_slice_metric(geomln.analyze_keys(keys, causal=True), "causal_pair_fraction", fixed_scale=True)
    >>> ax.images[0].get_array().shape, ax.get_ylabel(), ax.images[0].get_clim()
    ((3, 1), 'batch', (0.0, 1.0))
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    rows, cols = _grid_labels(report, rows, cols)
    grid, row_values, col_values = report.metric_grid(metric, rows=rows, cols=cols)
    ax = _axes(ax, three_d=False)
    finite = grid[np.isfinite(grid)]
    if fixed_scale:
        vmin, vmax = 0.0, 1.0
    vmin = (min(0.0, float(finite.min())) if finite.size else 0.0) if vmin is None else float(vmin)
    vmax = (float(finite.max()) if finite.size else 1.0) if vmax is None else float(vmax)
    vmax = vmax if vmax > vmin else vmin + 1.0
    image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    image.set_gid(gid)
    ax.set_xticks(range(len(col_values)), labels=_tick_labels(col_values))
    ax.set_yticks(range(len(row_values)), labels=_tick_labels(row_values))
    ax.set_xlabel(cols if col_values != [None] else "")
    ax.set_ylabel(rows if row_values != [None] else "")
    percent = 0.0 <= vmin and vmax <= 1.0
    if grid.size <= 400:
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{100 * value:.0f}" if percent else f"{value:.3g}", ha="center", va="center",
                        fontsize=7, color="white" if value < vmin + 0.6 * (vmax - vmin) else "black")
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    from matplotlib.ticker import PercentFormatter

    # a fraction is drawn in % on the cells, the colour bar and the title alike
    ax.figure.colorbar(image, ax=ax, label=label or name.replace("_", " ") + (" (%)" if percent else ""),
                       format=PercentFormatter(xmax=1.0, decimals=0) if percent else None)
    ax.set_title(title or f"{name.replace('_', ' ')}" + (" (% per cell)" if percent else ""), fontsize=9)
    return ax


def plot_causal_curve(report, *, group_by=None, ax=None):
    """Fraction of the keys visible at each prefix length that can still win the argmax (causal reports).

    Parameters
    ----------
    report : KeyReport
        From :func:`~geomln.analyze_keys` with ``causal=True``; see :meth:`~geomln.KeyReport.causal_curve`.
    group_by : str, optional
        One line per value of this label (e.g. ``"layer"``); default one line pooling every slice.
    ax : matplotlib Axes, optional
        Axes to draw into; None makes a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        One line per group (gid ``"causal_curve"``), x = prefix length, y in [0, 1].

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, geomln
    >>> from geomln.plotting import plot_causal_curve
    >>> keys = geomln.KeyArray.from_array(np.random.default_rng(0).normal(size=(2, 20, 2)),
    ...                                   axes="layer,token,dim")
    >>> ax = plot_causal_curve(geomln.analyze_keys(keys, causal=True), group_by="layer")
    >>> len(ax.lines), float(ax.lines[0].get_ydata()[0])
    (2, 1.0)
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    lengths, fractions, groups = report.causal_curve(group_by=group_by)
    ax = _axes(ax, three_d=False)
    for group, fraction in zip(groups, fractions, strict=True):
        (line,) = ax.plot(lengths, fraction, label="all slices" if group is None else f"{group_by} {group}")
        line.set_gid("causal_curve")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("prefix length t (keys visible to the query at position t - 1)")
    ax.set_ylabel("fraction of visible keys that can win")
    if len(groups) > 1:
        ax.legend(fontsize=7)
    ax.set_title(f"causal selectability of {report.meta.get('name') or 'keys'}", fontsize=9)
    return ax
