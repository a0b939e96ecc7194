"""Angles of the rows of saved matrices to the all-ones vector and to their best-fit hyperplane.

A plain ``(n, d)`` matrix gives one report. A stacked array such as ``(layer, head, token, dim)``, or one
split into sequences, gives one row per ``(n, d)`` slice (as ``geomln analyze`` iterates them), labelled by
its axes, plus a summary over all slices.
"""

import numpy as np

from .._validation import as_points
from ..errors import InputError
from ..geometry.angles import angle_to_hyperplane, angle_to_ones, fit_hyperplane
from ..models.keyfile import load_keys
from ._output import dumps_json, write_text

#: per-vector angle statistics of a report, with their labels in the text output
_STATS = {"angle_to_ones": "angle to 1 (deg)", "folded_angle_to_ones": "folded angle to 1 (deg)",
          "angle_to_hyperplane_through_origin": "angle to fitted plane (deg)"}


def add_args(parser):
    parser.add_argument("file", help="matrix (n, d) or key file: .npz, .npy, .safetensors, .pt, .h5, .csv, .tsv, "
                                     ".txt; stacked arrays such as (layer, head, token, dim) give a row per slice")
    parser.add_argument("--name", help="array inside the file (default: the file's default array), e.g. queries "
                                       "or hidden_after_ln")
    parser.add_argument("--axes", help="axis names as stored, e.g. layer,head,token,dim (default: the file's "
                                       "metadata)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")
    parser.add_argument("--out", help="write the output to this file (atomically) instead of stdout")


def _summary(values):
    return {"mean": float(np.mean(values)), "median": float(np.median(values)),
            "min": float(np.min(values)), "max": float(np.max(values))}


def _matrix_report(matrix):
    """Return (report of one (n, d) matrix, its per-vector angles by statistic name)."""
    points = as_points(matrix, "file", min_rows=2, min_dim=2)
    plane = fit_hyperplane(points)
    angles = {"angle_to_ones": angle_to_ones(points), "folded_angle_to_ones": angle_to_ones(points, folded=True),
              "angle_to_hyperplane_through_origin": angle_to_hyperplane(points, plane.normal)}
    report = {
        "n": int(points.shape[0]),
        "d": int(points.shape[1]),
        "angle_to_ones": _summary(angles["angle_to_ones"]),
        "folded_angle_to_ones": _summary(angles["folded_angle_to_ones"]),
        "hyperplane": {
            "angle_of_normal_to_ones": plane.angle_to_ones,
            "rms_residual": plane.rms_residual,
            "offset": plane.offset,
            "is_unique": plane.is_unique,
        },
        "angle_to_hyperplane_through_origin": _summary(angles["angle_to_hyperplane_through_origin"]),
    }
    return report, angles


def _where(labels):
    return ", ".join(f"{axis}={index}" for axis, index in labels.items())


def _sliced_report(path, keys):
    rows, pooled = [], {key: [] for key in _STATS}
    for key_slice in keys.slices():
        try:
            report, angles = _matrix_report(key_slice.matrix)
        except InputError as exc:
            raise InputError(f"slice {_where(key_slice.labels)} of {str(path)!r}: {exc}") from None
        rows.append({"labels": key_slice.labels, **report})
        for key, values in angles.items():
            pooled[key].append(values)
    planes = [row["hyperplane"] for row in rows]
    summary = {"n": sum(row["n"] for row in rows), "d": keys.d,
               **{key: _summary(np.concatenate(values)) for key, values in pooled.items()},
               "hyperplane": {"angle_of_normal_to_ones": _summary([p["angle_of_normal_to_ones"] for p in planes]),
                              "rms_residual": _summary([p["rms_residual"] for p in planes]),
                              "n_not_unique": sum(not p["is_unique"] for p in planes)}}
    return {"file": str(path), "name": keys.metadata.get("name"), "axes": list(keys.axes),
            "shape": list(keys.shape), "source_dtype": keys.metadata.get("source_dtype"), "n_slices": len(rows),
            "slices": rows, "summary": summary}


def _stat_lines(report):
    return [f"  {label:<30} mean {s['mean']:8.3f}  median {s['median']:8.3f}  min {s['min']:8.3f}  "
            f"max {s['max']:8.3f}" for s, label in ((report[key], label) for key, label in _STATS.items())]


def _matrix_text(report):
    plane = report["hyperplane"]
    return [f"{report['file']}: n = {report['n']} vectors, d = {report['d']}", *_stat_lines(report),
            f"  fitted hyperplane: normal at {plane['angle_of_normal_to_ones']:.4f} deg to 1, "
            f"rms residual {plane['rms_residual']:.3e}, offset {plane['offset']:.4g}"]


def _sliced_text(report):
    label_names = list(report["slices"][0]["labels"])
    header = [*label_names, "n", "d", "mean to 1", "mean folded", "mean to plane", "normal to 1", "rms residual"]
    cells = [[*(str(row["labels"][name]) for name in label_names), str(row["n"]), str(row["d"]),
              *(f"{row[key]['mean']:.3f}" for key in _STATS),
              f"{row['hyperplane']['angle_of_normal_to_ones']:.4f}", f"{row['hyperplane']['rms_residual']:.3e}"]
             for row in report["slices"]]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    shape = " x ".join(f"{a}={s}" for a, s in zip(report["axes"], report["shape"], strict=True))
    name = f" [{report['name']}]" if report["name"] else ""
    summary, planes = report["summary"], report["summary"]["hyperplane"]
    normal, rms = planes["angle_of_normal_to_ones"], planes["rms_residual"]
    return [f"{report['file']}{name}: {shape}; {report['n_slices']} slices, stored as {report['source_dtype']}",
            *("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *cells]),
            f"all {report['n_slices']} slices: n = {summary['n']} vectors, d = {summary['d']}", *_stat_lines(summary),
            f"  fitted hyperplanes: normal at {normal['min']:.4f} to {normal['max']:.4f} deg to 1 (median "
            f"{normal['median']:.4f}), rms residual {rms['min']:.3e} to {rms['max']:.3e} (median {rms['median']:.3e})"]


def run(args):
    keys = load_keys(args.file, name=args.name, axes=args.axes)
    if keys.ndim == 2 and keys.seq_offsets is None:
        report = {"file": str(args.file), **_matrix_report(keys.values)[0]}
        lines = _matrix_text(report)
    else:
        report = _sliced_report(args.file, keys)
        lines = _sliced_text(report)
    write_text(dumps_json(report) if args.json else "\n".join(lines) + "\n", args.out)
    return 0
