"""The export/import benchmark (issue #14) runs end to end in its tiny mode, so it never rots. No timing is asserted."""

import json

import pytest

from tests.bench.smoke import run_tiny


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_transfer_benchmark_measures_both_directions_on_both_backends(tmp_path):
    saved = tmp_path / "transfer.json"
    result = run_tiny("bench.transfer", "--json", str(saved))
    report = json.loads(saved.read_text())
    [size] = report["sizes"].values()
    assert size["checksums_agree"]
    assert size["rows"] > size["tasks"] >= 1000
    for name in ("postgres_export", "sqlite_import", "sqlite_export", "postgres_import"):
        assert size["steps"][name]["rows_per_s"] > 0, name
        assert size["steps"][name]["peak_rss_mb"] > 0, name
    assert {check["check"] for check in report["checks"]} >= {"PostgreSQL import rows/s", "PostgreSQL export rows/s"}
    assert "(--tiny: smoke mode, no timing claims)" in result.stdout
