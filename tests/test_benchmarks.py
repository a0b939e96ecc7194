"""The benchmark scripts' table logic runs on every case they define (the timings themselves are not tested)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_selectability as bench  # noqa: E402


@pytest.mark.parametrize("quick", [False, True])
def test_targets_and_table_cover_every_case(quick):
    cases = bench.make_cases(quick)
    rows = []
    for name, case in cases.items():
        rows.append(bench.Row(case=name, method="geomln", seconds=0.5, product=0.25, vertices=case.n // 2,
                              n=case.n, d=case.d, peak_gb=1.0))
        rows.append(bench.Row(case=name, method="(c) Qhull vertices", seconds=1.0, ratio=2.0))
    lines = bench.targets(rows, cases)
    assert lines and all(len(line) == 3 for line in lines)
    hostile = [line for line in lines if line[0].startswith(("circle_n", "sphere_inside_d8", "clusters_d8"))]
    assert hostile and all(met is True for _, _, met in hostile)  # 0.5 s is below every "< X s" target
    text = bench.render("cmd", {"cpu": "x", "cores": 2}, (0.0, 0.0), None, rows, lines, [], 1.0)
    assert "aniso_n5000_d32" in text
