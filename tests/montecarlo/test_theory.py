"""Exact Gaussian theory: expected_vertices_gaussian, unselectable_fraction_gaussian, `geomln theory`.

Oracles, none of which shares code with the library's quadrature:
- values quoted in issue 4 and exact facts (d = 1, n <= d + 1, internal angles of small simplices);
- d = 2 and d = 3 from the facet-counting formula, integrated with scipy.integrate.quad: the hyperplane
  through d iid N(0, I_d) points has a unit normal that depends only on their differences, which are
  independent of their mean ~ N(0, I/d); its signed distance r to the origin is therefore N(0, 1/d) and
  independent of the normal, so E f_{d-1} = 2 C(n, d) E[Phi(r)^(n-d)]. In the plane f0 = f1, and a
  simplicial 3-polytope has f0 = f2 / 2 + 2 (Euler);
- the Affentranger-Schneider sum evaluated with mpmath at 30 digits on the real-line integrals;
- Qhull (scipy.spatial.ConvexHull) Monte Carlo, within 4 standard errors;
- the angle-sum relations of the regular simplex at a vertex (the terms sum to 1, odd and even m to 1/2).
"""

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_error_line
from scipy import integrate, special
from scipy.spatial import ConvexHull

import geomln
from geomln import cli, theory
from geomln.cli.theory import parse_int_list
from geomln.errors import InputError

fraction = geomln.unselectable_fraction_gaussian
vertices = geomln.expected_vertices_gaussian

# ------------------------------------------------------------------------------------------ oracles


def facet_formula_vertices(n, d):
    """E f0 for d in {2, 3} from E f_{d-1} = 2 C(n, d) E[Phi(r)^(n-d)], r ~ N(0, 1/d) (module docstring)."""
    log_c = math.lgamma(n + 1) - math.lgamma(d + 1) - math.lgamma(n - d + 1)

    def log_integrand(r):
        return log_c + (n - d) * special.log_ndtr(r) - d * r * r / 2 + 0.5 * math.log(d / (2 * math.pi))

    grid = np.linspace(-8, 8, 16001)
    mode = float(grid[np.argmax(log_integrand(grid))])
    peak = float(log_integrand(mode))
    value, _ = integrate.quad(
        lambda r: math.exp(log_integrand(r) - peak),
        -10,
        12,
        points=[mode - 1, mode - 0.3, mode, mode + 0.3, mode + 1],
        limit=400,
        epsabs=0,
        epsrel=1e-13,
    )
    facets = 2 * math.exp(peak) * value
    return facets if d == 2 else facets / 2 + 2


def mpmath_fraction(n, d):
    """1 - E f0 / n from the Affentranger-Schneider sum, each angle an mpmath quadrature on the real line."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(30):
        total = mp.mpf(0)
        for m in range(d, 0, -2):
            beta = mp.re(
                mp.sqrt(m / mp.pi)
                * mp.quad(
                    lambda x, m=m: mp.exp(-m * x**2) * ((1 + mp.erf(1j * x)) / 2) ** (m - 1),
                    [-mp.inf, *mp.linspace(-6, 6, 13), mp.inf],
                )
            )
            gamma = mp.sqrt(m / mp.pi) * mp.quad(
                lambda x, m=m: mp.exp(-m * x**2) * ((1 + mp.erf(x)) / 2) ** (n - m),
                [-mp.inf, -2, 0, 1, 2, 3, 4, mp.inf],
            )
            total += mp.binomial(n - 1, m - 1) * beta * gamma
        return float(1 - 2 * total)


# ------------------------------------------------------------------------------ values and oracles


@pytest.mark.parametrize(
    ("n", "d", "expected", "tol"),
    [(10, 2, 0.45453, 5e-6), (60, 3, 0.68942, 5e-6), (60, 5, 0.30301, 5e-6)],
)
def test_values_quoted_in_the_issue(n, d, expected, tol):
    assert fraction(n, d) == pytest.approx(expected, abs=tol)


def test_ten_planar_points_have_5_4547_vertices():
    assert round(vertices(10, 2), 4) == 5.4547


@pytest.mark.parametrize("n", [3, 4, 7, 60, 1000, 10**6])
def test_a_line_has_two_vertices(n):
    assert fraction(n, 1) == 1 - 2 / n
    assert vertices(n, 1) == 2.0


@pytest.mark.parametrize("n", [3, 10, 1000, 10**5])
def test_general_series_gives_the_line_too(n):
    # the d = 1 shortcut is not what is tested here: S = gamma_{1,n} must be 1/n
    sums = theory._direct_sums(np.array([n]), np.array([1]))
    assert 1 - 2 * sums[0] == pytest.approx(1 - 2 / n, abs=1e-14)


@pytest.mark.parametrize(("n", "d"), [(1, 1), (2, 1), (1, 5), (3, 2), (4, 3), (5, 4), (31, 30), (7, 100)])
def test_affinely_independent_points_are_all_vertices(n, d):
    assert fraction(n, d) == 0.0
    assert vertices(n, d) == float(n)


@pytest.mark.parametrize("n", [3, 4, 5, 10, 57, 1000, 10**5])
def test_plane_matches_the_edge_counting_formula(n):
    assert vertices(n, 2) / n == pytest.approx(facet_formula_vertices(n, 2) / n, abs=1e-11)


@pytest.mark.parametrize("n", [5, 6, 20, 60, 1000, 10**5])
def test_space_matches_the_facet_counting_formula(n):
    assert vertices(n, 3) / n == pytest.approx(facet_formula_vertices(n, 3) / n, abs=1e-11)


@pytest.mark.slow
@pytest.mark.parametrize(("n", "d"), [(60, 5), (30, 8), (12, 6)])
def test_high_precision_oracle(n, d):
    # (30, 8) and (12, 6) take the complementary series in the library, the oracle the direct one
    expected = mpmath_fraction(n, d)
    assert fraction(n, d) == pytest.approx(expected, rel=1e-11, abs=1e-13)


@pytest.mark.parametrize(("n", "d", "seed"), [(40, 2, 1), (30, 3, 2), (25, 4, 3), (20, 5, 4), (12, 6, 5)])
def test_monte_carlo_with_qhull(n, d, seed):
    rng = np.random.default_rng(seed)
    trials = 400
    counts = np.array([len(ConvexHull(rng.standard_normal((n, d))).vertices) for _ in range(trials)])
    standard_error = max(counts.std(ddof=1), 0.5) / math.sqrt(trials)
    assert abs(counts.mean() - vertices(n, d)) < 4 * standard_error


# ------------------------------------------------------------------------------- angles and series


def test_internal_angles_of_small_simplices():
    assert theory._log_internal_angle(1) == 0.0
    assert math.exp(theory._log_internal_angle(2)) == pytest.approx(1 / 2, rel=1e-14)
    assert math.exp(theory._log_internal_angle(3)) == pytest.approx(1 / 6, rel=1e-14)
    tetrahedron = (3 * math.acos(1 / 3) - math.pi) / (4 * math.pi)  # solid angle at a vertex / 4 pi
    assert math.exp(theory._log_internal_angle(4)) == pytest.approx(tetrahedron, rel=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("m", [5, 8, 15, 30])
def test_internal_angles_against_mpmath(m):
    mp = pytest.importorskip("mpmath")
    with mp.workdps(80):
        expected = mp.re(
            mp.sqrt(m / mp.pi)
            * mp.quad(
                lambda x: mp.exp(-m * x**2) * ((1 + mp.erf(1j * x)) / 2) ** (m - 1), mp.linspace(-8, 8, 33)
            )
        )
        expected = float(mp.log(expected))
    assert theory._log_internal_angle(m) == pytest.approx(expected, abs=1e-13)


@pytest.mark.parametrize("n", [2, 3, 7, 30, 200, 3000])
def test_angle_sum_relations_of_the_regular_simplex(n):
    m = np.arange(1, n + 1)
    terms = np.exp(theory._log_terms(m, np.full(n, n)))
    assert math.fsum(terms) == pytest.approx(1.0, abs=1e-13)
    assert math.fsum(terms[0::2]) == pytest.approx(0.5, abs=1e-13)
    assert math.fsum(terms[1::2]) == pytest.approx(0.5, abs=1e-13)


@pytest.mark.parametrize("n", [2, 5, 100, 10**5, 10**9])
def test_external_angles_at_vertices_and_at_the_whole_simplex(n):
    logs = theory._log_external_angles(np.array([1, n]), np.array([n, n]))
    assert math.exp(logs[0]) == pytest.approx(1 / n, rel=1e-12)
    assert logs[1] == 0.0


@pytest.mark.parametrize(
    ("m", "n"), [(2, 10), (3, 60), (5, 1000), (30, 40), (30, 10**5), (2, 10**7), (200, 250)]
)
def test_external_angles_against_quad(m, n):
    def log_integrand(x):
        return -m * x * x + (n - m) * special.log_ndtr(math.sqrt(2) * x)

    grid = np.linspace(-5, 8, 13001)
    mode = float(grid[np.argmax(log_integrand(grid))])
    peak = float(log_integrand(mode))
    value, _ = integrate.quad(
        lambda x: math.exp(log_integrand(x) - peak),
        -8,
        10,
        points=[mode - 0.5, mode - 0.1, mode, mode + 0.1, mode + 0.5],
        limit=400,
        epsabs=0,
        epsrel=1e-13,
    )
    expected = 0.5 * math.log(m / math.pi) + peak + math.log(value)
    assert theory._log_external_angles(np.array([m]), np.array([n]))[0] == pytest.approx(expected, abs=1e-11)


def test_log_binomial_against_exact_integers():
    a = np.array([1, 2, 5, 16, 17, 59, 300, 99_999, 99_999, 99_999, 10**7, 10**12])
    b = np.array([0, 1, 2, 8, 1, 14, 150, 0, 29, 50_000, 200, 5])
    expected = np.array([math.log(math.comb(int(x), int(y))) for x, y in zip(a, b, strict=True)])
    np.testing.assert_allclose(theory._log_binom(a, b), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    ("n", "d"),
    [(n, d) for n in range(4, 81, 7) for d in range(2, 21, 3) if n > d + 1]
    + [(10**5, d) for d in (10, 20, 30)],
)
def test_direct_and_complementary_series_agree(n, d):
    direct = 1 - 2 * theory._direct_sums(np.array([n]), np.array([d]))[0]
    complementary = 2 * theory._complement_sums(np.array([n]), np.array([d]))[0]
    assert direct == pytest.approx(complementary, abs=1e-13)


def test_tiny_fractions_keep_relative_accuracy():
    # n = d + 2: only m = n contributes, so the fraction is 2 * beta_n exactly
    for d in (10, 20, 40):
        assert fraction(d + 2, d) == pytest.approx(2 * math.exp(theory._log_internal_angle(d + 2)), rel=1e-12)


def test_fraction_increases_with_n_and_decreases_with_d():
    n = np.arange(2, 301)[:, None]
    d = np.arange(1, 31)[None, :]
    values = fraction(n, d)
    inside = n > d + 1
    assert np.all((values > 0) == inside)
    assert np.all(np.diff(values, axis=0)[inside[1:] & inside[:-1]] > 0)
    assert np.all(np.diff(values, axis=1)[inside[:, 1:]] < 0)
    assert np.all((values >= 0) & (values < 1))


@pytest.mark.parametrize("n", [10**3, 10**5])
def test_large_n_stays_in_range_and_monotone_in_d(n):
    values = fraction(n, np.arange(1, 31))
    assert np.all(np.diff(values) < 0)
    assert values[0] == 1 - 2 / n


# ------------------------------------------------------------------------------- API shape


def test_vectorised_calls_broadcast_and_match_scalar_calls():
    n = np.array([[5], [12], [60]])
    d = np.array([1, 2, 3, 7])
    values = fraction(n, d)
    counts = vertices(n, d)
    assert values.shape == counts.shape == (3, 4)
    # equal up to rounding, not bit for bit: a grid runs its quadrature on other array shapes than a scalar
    # call, and numpy's SIMD loops and reductions may round by shape and CPU
    for i, ni in enumerate(n[:, 0]):
        for j, dj in enumerate(d):
            assert values[i, j] == pytest.approx(fraction(int(ni), int(dj)), rel=1e-14, abs=0)
            assert counts[i, j] == pytest.approx(vertices(int(ni), int(dj)), rel=1e-14, abs=0)
    np.testing.assert_allclose(counts, n * (1 - values), rtol=1e-13)


def test_return_types():
    assert type(fraction(10, 2)) is float
    assert type(vertices(np.int64(10), np.uint8(2))) is float
    assert type(fraction(np.array(10), 2)) is float
    assert isinstance(fraction([10], 2), np.ndarray)
    assert fraction(range(3, 6), 2).shape == (3,)
    assert fraction((10, 10), 2)[0] == fraction(10, 2)


@pytest.mark.parametrize(
    ("n", "d", "error", "pattern"),
    [
        (0, 3, InputError, r"`n` must be >= 1; got 0"),
        (5, 0, InputError, r"`d` must be >= 1; got 0"),
        (-4, 2, InputError, r"`n`"),
        ([3, 0], 2, InputError, r"`n` must be >= 1 everywhere; got 0 at index \(1,\)"),
        (10, [[2, -1]], InputError, r"`d` .* at index \(0, 1\)"),
        ([], 2, InputError, r"`n` must not be empty"),
        ([3, 4], [1, 2, 3], InputError, r"`n` and `d` must broadcast.*\(2,\) and \(3,\)"),
        (2.5, 3, TypeError, r"`n` must be an integer .*dtype float64"),
        (10.0, 3, TypeError, r"`n` .*int\(\.\.\.\)"),
        (10, float("nan"), TypeError, r"`d` .*got NaN"),
        (np.array([10.0, np.nan]), 3, TypeError, r"`n` .*got NaN"),
        ("10", 3, TypeError, r"`n` must be an integer .*dtype <U2"),
        (True, 3, TypeError, r"`n` must be an integer .*dtype bool"),
        (None, 3, TypeError, r"`n`"),
        (10, 1 + 2j, TypeError, r"`d`"),
    ],
)
@pytest.mark.parametrize("function", [fraction, vertices])
def test_bad_input(function, n, d, error, pattern):
    with pytest.raises(error, match=pattern):
        function(n, d)


# ------------------------------------------------------------------------------- parse_int_list


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3:60", list(range(3, 61))),
        ("3:60:2", list(range(3, 61, 2))),
        ("3:11:4", [3, 7, 11]),
        ("5,8,13", [5, 8, 13]),
        (" 13 , 5 ", [13, 5]),
        ("3:5,4,10:12,3", [3, 4, 5, 10, 11, 12]),
        ("7", [7]),
        ("7:7", [7]),
    ],
)
def test_parse_int_list(text, expected):
    assert parse_int_list(text, "--n") == expected


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"`--n`: cannot parse ''"),
        ("3,,5", r"`--n`: cannot parse"),
        ("a", r"`--n`: 'a' in 'a' is not an integer"),
        ("3:", r"`--n`: '' in '3:' is not an integer"),
        ("3.5", r"`--n`: '3.5' .*not an integer"),
        ("1:2:3:4", r"`--n`: cannot parse '1:2:3:4'"),
        ("5:3", r"`--n`: the range '5:3' is empty"),
        ("3:9:0", r"`--n`: the step of '3:9:0' must be >= 1; got 0"),
        ("0:5", r"`--n` values must be >= 1; got 0"),
        ("-2", r"`--n` values must be >= 1; got -2"),
        ("1:2000000", r"`--n`: '1:2000000' holds more than 1,000,000 values"),
    ],
)
def test_parse_int_list_errors(text, pattern):
    with pytest.raises(InputError, match=pattern):
        parse_int_list(text, "--n")


def test_parse_int_list_minimum_and_type():
    assert parse_int_list("0:2", "--k", minimum=0) == [0, 1, 2]
    with pytest.raises(InputError, match="`--k` values must be >= 3"):
        parse_int_list("2:5", "--k", minimum=3)
    with pytest.raises(TypeError, match="`--n` must be a string"):
        parse_int_list(5, "--n")


# ------------------------------------------------------------------------------- CLI


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err




def test_cli_default_table_is_the_paper_grid(capsys):
    code, out, err = run_cli(["theory"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "exact theory" in lines[0]
    assert lines[1].split()[-13:] == [str(d) for d in range(3, 16)]
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]] for line in lines[2:]}
    assert sorted(rows) == list(range(3, 61))
    assert rows[60][0] == 0.68942 and rows[60][2] == 0.30301
    assert rows[4] == [0.0] * 13
    expected = fraction(np.arange(3, 61)[:, None], np.arange(3, 16)).round(5)
    np.testing.assert_array_equal(np.array([rows[n] for n in range(3, 61)]), expected)


def test_cli_csv(capsys):
    code, out, err = run_cli(["theory", "--n", "10,60", "--d", "2:5:3", "--format", "csv"], capsys)
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(int(r["n"]), int(r["d"])) for r in rows] == [(10, 2), (10, 5), (60, 2), (60, 5)]
    assert float(rows[0]["expected_vertices"]) == pytest.approx(vertices(10, 2), rel=1e-14)  # a grid vs a scalar
    assert float(rows[0]["unselectable_fraction"]) == pytest.approx(0.45453, abs=5e-6)
    assert float(rows[3]["unselectable_fraction"]) == pytest.approx(fraction(60, 5), rel=1e-14)


def test_cli_json_to_file(tmp_path, capsys):
    target = tmp_path / "theory.json"
    code, out, err = run_cli(
        ["theory", "--n", "3:12", "--d", "1:3", "--format", "json", "--out", str(target)], capsys
    )
    assert code == 0 and out == "" and err == ""
    payload = json.loads(target.read_text())
    assert payload["n"] == list(range(3, 13)) and payload["d"] == [1, 2, 3]
    assert payload["geomln_version"] == geomln.__version__
    assert len(payload["rows"]) == 30
    row = next(r for r in payload["rows"] if (r["n"], r["d"]) == (10, 2))
    assert row["expected_vertices"] == vertices(10, 2)
    assert row["unselectable_fraction"] == fraction(10, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theory.json"]


def test_cli_table_digits(capsys):
    code, out, _ = run_cli(["theory", "--n", "10", "--d", "2", "--digits", "8"], capsys)
    assert code == 0
    assert out.splitlines()[-1].split() == ["10", f"{fraction(10, 2):.8f}"]


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--n", "0:5"], r"`--n` values must be >= 1"),
        (["--d", "x"], r"`--d`: 'x' in 'x' is not an integer"),
        (["--d", "9:3"], r"`--d`: the range '9:3' is empty"),
        (["--digits", "30"], r"`--digits` must be between 0 and 17; got 30"),
    ],
)
def test_cli_bad_input_is_one_line(argv, pattern, capsys):
    code, out, err = run_cli(["theory", *argv], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, pattern)


def test_cli_unwritable_output_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "missing" / "out.csv"
    code, out, err = run_cli(
        ["theory", "--n", "5", "--d", "2", "--format", "csv", "--out", str(target)], capsys
    )
    assert code == 1
    assert_one_error_line(err, re.escape(str(target)))
    assert not Path(tmp_path / "missing").exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["theory", "--format", "xml"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
