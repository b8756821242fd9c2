"""flux-dao on its SQLite default against PocketBase (Go, on SQLite too): the shared scenarios and their figures.

Both serve the same rows (``bench.seed.generate``) and the same logical requests: flux-dao gets the request lists of
the PostgreSQL run (``requests_for``), PocketBase each of them translated to its collections API
(``PocketBase.translate``), so both draw the same ids, users and days. S0 is the constant endpoint: ``/health``
against PocketBase's ``/api/health``.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from bench.pocketbase import PocketBase
from bench.scenarios import API, SCENARIOS, Request, Scenario, requests_for
from bench.seed import Dataset

PEER_SCENARIOS: dict[str, Scenario] = {
    scenario.key: scenario for scenario in (SCENARIOS[key] for key in ("S0", "S1", "S2", "S3", "S4", "S5"))
}
"""The scenarios both serve, in run order."""
PEER_TARGET = 1.0
"""flux-dao on SQLite req/s / PocketBase req/s, at least (issue #10)."""


def peer_requests(key: str, data: Dataset, pocketbase: PocketBase) -> tuple[list[Request], list[Request]]:
    """A scenario's request list for flux-dao and the same requests, one for one, for PocketBase."""
    flux = requests_for(PEER_SCENARIOS[key], data)
    return flux, [pocketbase.translate(request, data.start) for request in flux]


def check_flux_readback(url: str, headers: dict[str, str], data: Dataset) -> None:
    """The seeded sample tasks read back through flux-dao's API as they were generated (ids, datetimes, values).

    The seed writes flux-dao's storage format directly; a mismatch here means it no longer matches what the service
    reads, and every figure after it would be measured on the wrong data.
    """
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for task in data.sample_tasks:
            response = client.get(f"{API}/{task.id}")
            if response.status_code != 200:
                raise RuntimeError(f"flux-dao on SQLite answered {response.status_code} for seeded task {task.id}")
            got = response.json()
            wrong = {
                name: (got.get(name), expected)
                for name, expected in task._asdict().items()
                if _decoded(got.get(name), expected) != expected
            }
            if wrong:
                raise RuntimeError(f"flux-dao on SQLite read back task {task.id} differently (got, expected): {wrong}")


def check_same_answers(
    flux: tuple[str, dict[str, str]], peer: PocketBase, data: Dataset, keys: list[str], samples: int = 3
) -> None:
    """The first requests of each read scenario find the same rows on both (ids mapped, in order; S2's total).

    Proves the translation asks PocketBase the same question before any figure compares the two.
    """
    url, headers = flux
    with httpx.Client(base_url=url, headers=headers, timeout=30) as to_flux, peer.client() as to_peer:
        for key in keys:
            flux_requests, peer_requests_ = peer_requests(key, data, peer)
            pairs = list(zip(flux_requests, peer_requests_, strict=True))[:samples]
            for (method, flux_path, _), (_, peer_path, _) in pairs:
                if method != "GET" or key == "S0":
                    break
                mine, theirs = to_flux.get(flux_path), to_peer.get(peer_path)
                mine.raise_for_status()
                theirs.raise_for_status()
                if _row_ids(mine.json(), peer) != _row_ids(theirs.json(), None):
                    raise RuntimeError(f"{key}: flux-dao and PocketBase answer {flux_path} with different rows")


def _row_ids(body: Any, mapped_by: PocketBase | None) -> tuple[list[str], Any]:
    """The row ids of an answer (a record, a page or an array) and its total, as PocketBase ids."""
    if isinstance(body, dict) and "items" in body:
        rows, total = body["items"], body.get("total", body.get("totalItems"))
    else:
        rows, total = (body if isinstance(body, list) else [body]), None
    ids = [row["id"] if mapped_by is None else mapped_by.ids[UUID(row["id"])] for row in rows]
    return ids, None if total == -1 else total  # PocketBase's -1: total skipped


def _decoded(value: Any, like: Any) -> Any:
    """A JSON value as the type of the generated one (ids and datetimes are strings on the wire)."""
    if value is None:
        return None
    if isinstance(like, UUID):
        return UUID(value)
    if isinstance(like, datetime):
        return datetime.fromisoformat(value)
    return value


def print_peer_row(key: str, row: dict[str, Any]) -> None:
    flux, peer = row["flux"], row["pocketbase"]
    verdict = "ok" if row["ratio"] >= PEER_TARGET else f"BELOW {PEER_TARGET}"
    print(
        f"{key:4} {PEER_SCENARIOS[key].title:47}  sqlite {flux['rps']:6.0f} req/s p50 {flux['p50_ms']:6.2f} ms "
        f"p99 {flux['p99_ms']:7.2f} ms cpu {flux['cpu_us_per_req']:5.0f} us non2xx {flux['non_2xx']:<3} | pocketbase "
        f"{peer['rps']:6.0f} req/s p99 {peer['p99_ms']:7.2f} ms cpu {peer['cpu_us_per_req']:5.0f} us non2xx "
        f"{peer['non_2xx']:<3} | ratio {row['ratio']:.2f} {verdict:9} p99 ratio {row['p99_ratio']:.2f}",
        flush=True,
    )
