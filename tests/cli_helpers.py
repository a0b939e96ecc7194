"""Helpers shared by the command-line tests: run ``geomln`` in process and check its one-line errors."""

import re

from geomln import cli


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
