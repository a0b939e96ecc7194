"""Helpers shared by the command-line tests: run ``geomln`` in process, check its one-line errors, and the
float64 reference for ``geomln angles`` (``math.atan2`` angles, ``eigh`` plane fit, not the library's code)."""

import math
import re

import numpy as np
import pytest

from geomln.cli import _main as cli


def run(argv, capsys):
    """Run ``geomln argv`` in process; return (exit code, stdout, stderr)."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err, *patterns):
    """Stderr is exactly one ``geomln: error:`` line, without a traceback, matching every pattern."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("geomln: error: "), err
    assert "Traceback" not in err
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])


def ref_angle(u, v):
    dot = math.fsum(float(a) * float(b) for a, b in zip(u, v, strict=True))
    return math.degrees(math.atan2(math.sqrt(max(math.fsum(u * u) * math.fsum(v * v) - dot * dot, 0.0)), dot))


def ref_report(points):
    ones = np.ones(points.shape[1])
    to_ones = np.array([ref_angle(row, ones) for row in points])
    centred = points - points.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    normal = vectors[:, 0]
    to_plane = np.array([90.0 - min(a, 180 - a) for a in (ref_angle(row, normal) for row in points)])
    normal_to_ones = ref_angle(normal, ones)
    return {
        "angle_to_ones": to_ones,
        "folded_angle_to_ones": np.minimum(to_ones, 180 - to_ones),
        "angle_to_hyperplane_through_origin": to_plane,
        "angle_of_normal_to_ones": min(normal_to_ones, 180 - normal_to_ones),
        "rms_residual": math.sqrt(max(values[0], 0.0) / len(points)),
        "offset_abs": abs(normal @ points.mean(axis=0)),
    }


def summary(values):
    return [np.mean(values), np.median(values), np.min(values), np.max(values)]


def check_matrix_report(report, points):
    """`report` (``geomln angles --json`` of one matrix, or one of its slices) agrees with the reference."""
    ref = ref_report(points)
    assert (report["n"], report["d"]) == points.shape
    for key in ("angle_to_ones", "folded_angle_to_ones", "angle_to_hyperplane_through_origin"):
        got = report[key]
        np.testing.assert_allclose(
            [got["mean"], got["median"], got["min"], got["max"]], summary(ref[key]), atol=1e-9, err_msg=key
        )
    plane = report["hyperplane"]
    assert plane["angle_of_normal_to_ones"] == pytest.approx(ref["angle_of_normal_to_ones"], abs=1e-7)
    assert plane["rms_residual"] == pytest.approx(ref["rms_residual"], rel=1e-7, abs=1e-12)
    assert abs(plane["offset"]) == pytest.approx(ref["offset_abs"], rel=1e-7, abs=1e-12)
    assert isinstance(plane["is_unique"], bool)
