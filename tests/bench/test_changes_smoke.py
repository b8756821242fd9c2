"""The change-feed benchmark (issue #12) runs end to end in its tiny mode, so it never rots. No timing is asserted."""

import json

import pytest

from tests.bench.smoke import run_tiny


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_changes_benchmark_measures_trigger_cost_feed_throughput_and_fan_out(tmp_path):
    saved = tmp_path / "changes.json"
    result = run_tiny("bench.changes", "--json", str(saved))
    report = json.loads(saved.read_text())
    run = report["postgres"]
    for key in ("S3", "S4"):
        row = run["triggers"][key]
        for side in ("without", "with"):
            assert row[side]["requests"] > 0, (key, side)
            assert row[side]["non_2xx"] == 0, (key, side)
            assert row[side]["cpu_us_per_req"] > 0, (key, side)
        assert row["without"]["changes_logged"] == 0, key  # the triggers really were off
        assert row["with"]["changes_logged"] >= row["with"]["requests"], key  # and on: every write logged
    feed = run["feed"]
    assert feed["logged"] > 2000  # the seed's 2,000 tasks went through the triggers too
    for reader in ("pages", "stream"):
        assert feed[reader]["changes"] == feed["logged"], reader
        assert feed[reader]["changes_per_s"] > 0, reader
    fanout = run["fanout"]
    assert fanout["subscribers"] == 10
    assert fanout["writes"] == 20
    assert fanout["pairs"] == 200
    assert fanout["missing"] == fanout["skipped"] == fanout["duplicates"] == fanout["out_of_order"] == 0, fanout
    assert fanout["p99_ms"] >= fanout["p50_ms"]
    assert len(report["checks"]) == 6
    assert "(--tiny: smoke mode, no timing claims)" in result.stdout
    for figure in ("req/s lost", "changes/s", "SSE fan-out", "PASS" if report["checks"][4]["pass"] else "FAIL"):
        assert figure in result.stdout, figure
