"""The safe-writes benchmark (issue #11) runs end to end in its tiny mode, so it never rots. No timing is asserted."""

import json

import pytest

from tests.bench.smoke import run_tiny


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_safe_writes_benchmark_measures_bulk_batch_and_if_match(tmp_path):
    saved = tmp_path / "safe-writes.json"
    result = run_tiny("bench.safe_writes", "--json", str(saved))
    report = json.loads(saved.read_text())
    run = report["postgres"]
    sides = {"bulk": ("single", "bulk"), "batch": ("single", "batch"), "if_match": ("without", "with")}
    for test, names in sides.items():
        for side in names:
            assert run[test][side]["requests"] > 0, (test, side)
            assert run[test][side]["non_2xx"] == 0, (test, side)
            assert run[test][side]["cpu_us_per_req"] > 0, (test, side)
    assert run["bulk"]["rows_per_s"]["bulk"] == pytest.approx(run["bulk"]["bulk"]["rps"] * 1000)
    assert run["if_match"]["tasks"] > 0
    assert len(report["checks"]) == 4
    assert "(--tiny: smoke mode, no timing claims)" in result.stdout
