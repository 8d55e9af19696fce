"""The benchmark's own mechanics: what it reports and how it refuses to run.

Its measurements are not tested here (no timing in tests); `python -m bench`
itself is how they are checked.
"""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.instructions import instructions_in, valgrind_path
from bench.programs import ProgramMissingError
from bench.project import PYTEST_SUMMARY
from bench.sink import otlp_sink
from bench.stats import Results
from tests.support.project import ROOT


def test_the_table_shows_min_median_and_max_per_measurement() -> None:
    results = Results()
    for value in (1200.4, 980.0, 1010.6):
        results.add("1 worker · GET /api/users/me", "req/s", value)
    for value in (0.5, 0.25):
        results.add("Render: `copier copy` (CLI, defaults)", "s", value)

    assert results.table().splitlines() == [
        "| Measurement | Unit | Min | Median | Max |",
        "|---|---|--:|--:|--:|",
        "| 1 worker · GET /api/users/me | req/s | 980 | 1,011 | 1,200 |",
        "| Render: `copier copy` (CLI, defaults) | s | 0.25 | 0.38 | 0.50 |",
    ]
    assert results.as_json()[0]["values"] == [1200.4, 980.0, 1010.6]


@pytest.mark.parametrize(
    ("closing_line", "tests", "seconds"),
    [
        ("120 passed in 12.06s", "120", "12.06"),
        ("===== 119 passed, 1 warning in 3.50s =====", "119", "3.50"),
    ],
)
def test_the_rendered_suites_summary_is_read(closing_line: str, tests: str, seconds: str) -> None:
    assert PYTEST_SUMMARY.findall(closing_line) == [(tests, seconds)]


def test_a_callgrind_dumps_count_is_read() -> None:
    # The head of a dump written by `callgrind_control --dump` (valgrind 3.19).
    dump = (
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 16833\n"
        "part: 6\n\ndesc: Trigger: dump\n\npositions: line\nevents: Ir\n"
        "summary: 72961827\n\n\nob=(15) /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n"
    )

    assert instructions_in(dump) == 72_961_827
    with pytest.raises(RuntimeError, match="no 'summary:' line"):
        instructions_in("# callgrind format\nevents: Ir\n")


def test_without_valgrind_the_message_says_how_to_install_or_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(
        ProgramMissingError, match=r"apt-get install -y valgrind.*--no-instructions"
    ):
        valgrind_path()


def test_an_unreachable_database_stops_it_with_a_message() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--runs", "1", "--no-matrix"],
        cwd=ROOT,
        # Port 9 (discard) on loopback: nothing listens there.
        env={**os.environ, "BENCH_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/postgres"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert finished.returncode == 2
    assert "cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:9/postgres" in (
        finished.stderr
    )
    assert finished.stdout == ""


def test_the_otlp_sink_answers_and_counts_each_export() -> None:
    with otlp_sink() as sink:
        response = httpx.post(
            f"{sink.endpoint}/v1/traces",
            content=b"\x0a\x00",
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
        assert sink.exports == 1
        assert sink.requests == []  # The benchmark's sink keeps nothing.


def test_a_keeping_sink_keeps_each_exports_path_type_and_body() -> None:
    with otlp_sink(keep=True) as sink:
        httpx.post(
            f"{sink.endpoint}/v1/traces",
            content=b"\x0a\x00",
            headers={"Content-Type": "application/x-protobuf"},
        ).raise_for_status()
        assert sink.requests == [("/v1/traces", "application/x-protobuf", b"\x0a\x00")]
