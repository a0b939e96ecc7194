"""Angles of the rows of a saved matrix to the all-ones vector and to their best-fit hyperplane."""

import numpy as np

from .._validation import as_points
from ..angles import angle_to_hyperplane, angle_to_ones, fit_hyperplane
from ..io import load_array
from ._output import dumps_json, write_text


def add_args(parser):
    parser.add_argument("file", help="matrix of shape (n, d): .npy, .npz, .csv, .tsv or .txt")
    parser.add_argument("--name", help="array name inside an .npz archive")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")
    parser.add_argument("--out", help="write the output to this file (atomically) instead of stdout")


def _summary(values):
    return {"mean": float(np.mean(values)), "median": float(np.median(values)),
            "min": float(np.min(values)), "max": float(np.max(values))}


def run(args):
    points = as_points(load_array(args.file, name=args.name), "file", min_rows=2, min_dim=2)
    plane = fit_hyperplane(points)
    report = {
        "file": str(args.file),
        "n": int(points.shape[0]),
        "d": int(points.shape[1]),
        "angle_to_ones": _summary(angle_to_ones(points)),
        "folded_angle_to_ones": _summary(angle_to_ones(points, folded=True)),
        "hyperplane": {
            "angle_of_normal_to_ones": plane.angle_to_ones,
            "rms_residual": plane.rms_residual,
            "offset": plane.offset,
            "is_unique": plane.is_unique,
        },
        "angle_to_hyperplane_through_origin": _summary(angle_to_hyperplane(points, plane.normal)),
    }
    if args.json:
        write_text(dumps_json(report), args.out)
        return 0
    lines = [f"{report['file']}: n = {report['n']} vectors, d = {report['d']}"]
    for key, label in (("angle_to_ones", "angle to 1 (deg)"), ("folded_angle_to_ones", "folded angle to 1 (deg)"),
                       ("angle_to_hyperplane_through_origin", "angle to fitted plane (deg)")):
        s = report[key]
        lines.append(f"  {label:<30} mean {s['mean']:8.3f}  median {s['median']:8.3f}  "
                     f"min {s['min']:8.3f}  max {s['max']:8.3f}")
    lines.append(f"  fitted hyperplane: normal at {plane.angle_to_ones:.4f} deg to 1, "
                 f"rms residual {plane.rms_residual:.3e}, offset {plane.offset:.4g}")
    write_text("\n".join(lines) + "\n", args.out)
    return 0
