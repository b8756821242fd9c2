"""Issue #9's query language, checked against an oracle written in Python.

``CASES`` is the conformance table: each case is a list query (a resource and a query string) and a Python predicate
over the rows the test created. The expected answer is computed here, never written down: the rows the predicate
keeps, ordered by the query's ``sort`` (or the resource's default order) with nulls last in both directions and
``id`` as the final tie-breaker in the direction of the first term, each row shaped by ``fields`` and ``include``
(to-one parents, to-many children in their default order, at most ``include_limit`` each, filtered by the case's
embed predicates). Every case is checked twice: one page holding the whole result, and a cursor walk (``limit``
changing from page to page) whose concatenated pages must equal the same expected list.

The data set is small (two users, seven goals, 46 tasks, three notifications) and built through the API once per
test. Titles of the first user are lowercase ASCII words, so sorting by title does not depend on the database
collation; the second user's titles hold the case-folding and wildcard material (upper and lower
A-umlaut, Greek sigma and Cyrillic zhe, ``%``, ``_``).

Error cases (unknown operators and fields, too many ``in`` values, cursor misuse, bad values, repeated scalar
parameters) follow the table.
"""

import base64
import functools
import itertools
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from litestar.testing import TestClient

from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, fresh_database
from tests.factories import API
from tests.live import FLUX_DAO, live_server
from tests.problems import assert_problem

Row = dict[str, Any]
Pairs = list[tuple[str, str]]

PAGE_KEYS = {"items", "total", "page", "page_size", "has_next", "has_prev", "next_cursor"}
PATHS = {
    "users": "users",
    "goals": "goals",
    "tasks": "tasks",
    "notification_log": "notification-log",
    "conversations": "conversations",
    "patterns": "patterns",
    "items": "items",
}
DATETIMES = {
    "created_at",
    "updated_at",
    "scheduled_at",
    "completed_at",
    "sent_at",
    "responded_at",
    "activated_at",
    "last_message_at",
    "due_at",
}
DEFAULT_ORDER: dict[str, list[tuple[str, bool]]] = {
    "users": [("created_at", True)],
    "goals": [("created_at", True)],
    "tasks": [("created_at", True)],
    "notification_log": [("sent_at", True)],
    "conversations": [("created_at", True)],
    "patterns": [("updated_at", True)],
    "items": [("created_at", True)],
}
TO_ONE: dict[tuple[str, str], tuple[str, str]] = {
    # (entity, embed name): (reference field, parent entity)
    ("goals", "user"): ("user_id", "users"),
    ("goals", "parent_goal"): ("parent_goal_id", "goals"),
    ("tasks", "user"): ("user_id", "users"),
    ("tasks", "goal"): ("goal_id", "goals"),
    ("notification_log", "task"): ("task_id", "tasks"),
}
TO_MANY: dict[tuple[str, str], tuple[str, str]] = {
    # (entity, embed name): (child entity, the child's reference field)
    ("users", "goals"): ("goals", "user_id"),
    ("users", "tasks"): ("tasks", "user_id"),
    ("goals", "tasks"): ("tasks", "goal_id"),
}
WALK_LIMITS = (4, 1, 7, 3)
"""Page sizes of a cursor walk, cycled: the limit may change between pages."""


# --- the data set ---------------------------------------------------------------------------------------------------


@dataclass
class World:
    """The rows the test created (as the API answered them), by entity, and names for the query placeholders."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def id(self, name: str) -> str:
        return self.names[name]

    def add(self, entity: str, label: str, row: Row) -> Row:
        self.rows.setdefault(entity, []).append(row)
        self.labels[row["id"]] = label
        return row

    def find(self, entity: str, row_id: str | None) -> Row | None:
        return next((r for r in self.rows[entity] if r["id"] == row_id), None)

    def label(self, row_ids: list[str]) -> list[str]:
        return [self.labels.get(i, i) for i in row_ids]


STATUSES = ("pending", "done", "missed", "rescheduled", "cancelled")
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
FOLDING_TITLES = (
    "Äpfel kaufen",
    "äpfel schälen",
    "ΣΟΦΙΑ lernen",
    "σοφία",
    "Жук",
    "жара",
    "100% done",
    "100 done",
    "a_b",
    "axb",
    "Run fast",
    "run slow",
    "RUN",
    "Running %_",
    "ÄÖÜ",
    "%off",
)


def hour(h: int, minute: int = 0) -> str:
    return f"2030-01-01T{h:02d}:{minute:02d}:00Z"


def build_world(client: TestClient) -> World:  # type: ignore[type-arg]
    w = World()
    alice = w.add("users", "alice", factories.user(client, email="alice@example.com"))
    bob = w.add("users", "bob", factories.user(client, email="bob@example.com"))
    goal_specs: list[tuple[str, Row, dict[str, Any]]] = [
        ("g_run", alice, {"title": "marathon", "class_tags": ["health", "sport"], "activated_at": hour(1)}),
        (
            "g_greek",
            alice,
            {
                "title": "greek",
                "class_tags": ["learning"],
                "status": "completed",
                "activated_at": hour(5),
                "completed_at": "2030-01-03T00:00:00Z",
            },
        ),
        ("g_read", alice, {"title": "reading", "class_tags": ["health", "learning", "mind"], "status": "pipeline"}),
        ("g_empty", alice, {"title": "spare", "class_tags": []}),
        (
            "g_money",
            bob,
            {"title": "Save money 100%", "class_tags": ["money"], "status": "abandoned", "activated_at": hour(8)},
        ),
        ("g_arger", bob, {"title": "Ärger vermeiden"}),
        ("g_under", bob, {"title": "under_score", "class_tags": ["health", "sport", "mind"]}),
    ]
    for name, owner, body in goal_specs:
        parent = {"parent_goal_id": w.id("g_money")} if name == "g_under" else {}
        w.names[name] = w.add("goals", name, factories.goal(client, owner["id"], **body, **parent))["id"]
    w.names["alice"], w.names["bob"] = alice["id"], bob["id"]

    for i in range(30):  # alice: 23 tasks on g_run (more than the default include_limit of 20)
        goal = "g_run" if i % 4 != 3 else {3: "g_greek", 7: "g_greek", 11: "g_read", 15: "g_read"}.get(i)
        status = STATUSES[i % 5]
        body = {
            "title": WORDS[i % 6],
            "status": status,
            "scheduled_at": None if i % 7 == 3 else hour((i * 5) % 11),
            "duration_minutes": None if i % 4 == 1 else 15 * (1 + i % 3),
            "goal_id": w.id(goal) if goal else None,
            "completed_at": f"2030-01-02T00:{(i * 13) % 50:02d}:00Z" if status == "done" else None,
        }
        task = w.add("tasks", f"a{i:02d}", factories.task(client, alice["id"], **body))
        w.names[f"created_{i}"] = task["created_at"]
    for j, title in enumerate(FOLDING_TITLES):
        goal = ("g_money", "g_arger", None)[j % 3]
        body = {
            "title": title,
            "status": STATUSES[(j + 2) % 5],
            "scheduled_at": None if j % 5 == 2 else hour(j % 11, 30),
            "duration_minutes": None if j % 6 == 0 else 20 + 10 * (j % 3),
            "goal_id": w.id(goal) if goal else None,
        }
        w.add("tasks", f"b{j:02d}", factories.task(client, bob["id"], **body))
    task_ids = {w.labels[r["id"]]: r["id"] for r in w.rows["tasks"]}
    for label, task_label, channel, sent_at in [
        ("n1", "a00", "push", hour(9)),
        ("n2", "b00", "whatsapp", None),
        ("n3", "a01", "call", hour(2)),
        ("n4", "a01", "push", hour(5)),
    ]:
        body = {"channel": channel, "sent_at": sent_at}
        w.add("notification_log", label, factories.notification(client, task_ids[task_label], **body))
    for n, (context_type, last) in enumerate(
        [("goal", hour(3)), ("task", None), ("onboarding", hour(7)), ("goal", None)]
    ):
        owner = (alice, bob)[n % 2]["id"]
        body = {"context_type": context_type, "last_message_at": last}
        w.add("conversations", f"c{n}", factories.conversation(client, owner, **body))
    for n, (kind, confidence) in enumerate(
        [("sleep", 0.1), ("mood", 0.5), ("sleep", None), ("focus", 0.75), (None, 0.5)]
    ):
        w.add("patterns", f"p{n}", factories.pattern(client, alice["id"], pattern_type=kind, confidence=confidence))
    return w


# --- the oracle -----------------------------------------------------------------------------------------------------

Pred = Callable[[Row, World], bool]


def always(_row: Row, _w: World) -> bool:
    return True


@dataclass(frozen=True)
class Case:
    """One query of the table: ``GET /{resource}?{query}`` must answer exactly the rows ``where`` keeps."""

    resource: str
    query: str
    where: Pred
    embeds: Mapping[str, Pred] = field(default_factory=dict)
    """Predicates on embedded children, by include path (``tasks``, ``goals.tasks``), for prefixed embed filters."""

    def __str__(self) -> str:
        return f"{PATHS[self.resource]}?{self.query}"


def value_of(name: str, value: Any) -> Any:
    return datetime.fromisoformat(value) if value is not None and name in DATETIMES else value


def at(text: str) -> datetime:
    """An instant; naive text is UTC (as the service reads it)."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def on(name: str, test: Callable[[Any], bool]) -> Pred:
    """Rows whose ``name`` is not null and passes ``test`` (range operators: a null never matches)."""
    return lambda row, _w: row[name] is not None and test(value_of(name, row[name]))


def parse(query: str, w: World) -> Pairs:
    """The query's (name, value) pairs, placeholders filled in; values are raw (not yet percent-encoded)."""
    filled = query.format_map(w.names)
    return [(k, v) for k, _, v in (part.partition("=") for part in filled.split("&") if part)]


def encode(pairs: Pairs) -> str:
    return "&".join(f"{k}={quote(v, safe=',:')}" for k, v in pairs)


def sort_terms(entity: str, sort: str | None) -> list[tuple[str, bool]]:
    """The order of a list: the ``sort`` terms (or the default order), then ``id`` in the first term's direction."""
    terms = [(t.lstrip("-"), t.startswith("-")) for t in sort.split(",")] if sort else list(DEFAULT_ORDER[entity])
    if all(name != "id" for name, _ in terms):
        terms.append(("id", terms[0][1]))
    return terms


def ordered(entity: str, rows: list[Row], sort: str | None) -> list[Row]:
    terms = sort_terms(entity, sort)

    def compare(a: Row, b: Row) -> int:
        for name, descending in terms:
            x, y = value_of(name, a[name]), value_of(name, b[name])
            if x == y:
                continue
            if x is None:
                return 1  # nulls last, ascending and descending alike
            if y is None:
                return -1
            result = -1 if x < y else 1
            return -result if descending else result
        return 0

    return sorted(rows, key=functools.cmp_to_key(compare))


def include_tree(include: str | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in (include or "").split(","):
        node = tree
        for name in filter(None, path.split(".")):
            node = node.setdefault(name, {})
    return tree


@dataclass(frozen=True)
class Shape:
    fields: set[str] | None
    tree: dict[str, Any]
    limit: int
    embeds: Mapping[str, Pred]


def represent(w: World, entity: str, row: Row, shape: Shape, path: str = "", top: bool = True) -> Row:
    """The JSON the service should answer for ``row``: ``fields`` applies to the top level, embeds are added."""
    keep = shape.fields if top else None
    out = dict(row) if keep is None else {k: v for k, v in row.items() if k in keep or k == "id"}
    node = shape.tree
    for part in filter(None, path.split(".")):
        node = node[part]
    for name in node:
        full = f"{path}.{name}" if path else name
        if (entity, name) in TO_ONE:
            ref, parent_entity = TO_ONE[(entity, name)]
            parent = w.find(parent_entity, row[ref])
            out[name] = None if parent is None else represent(w, parent_entity, parent, shape, full, top=False)
        else:
            child, ref = TO_MANY[(entity, name)]
            keep_child = shape.embeds.get(full, always)
            kids = [c for c in w.rows[child] if c[ref] == row["id"] and keep_child(c, w)]
            out[name] = [represent(w, child, c, shape, full, top=False) for c in ordered(child, kids, None)][
                : shape.limit
            ]
    return out


def expected_items(case: Case, w: World) -> list[Row]:
    params = dict(parse(case.query, w))
    fields = set(params["fields"].split(",")) if "fields" in params else None
    # an embed filter (``tasks.status=...``) brings its embed in, as `include=tasks` would
    included = ",".join([params.get("include", ""), *(name.rpartition(".")[0] for name in params if "." in name)])
    shape = Shape(fields, include_tree(included), int(params.get("include_limit", "20")), case.embeds)
    rows = [r for r in w.rows[case.resource] if case.where(r, w)]
    return [represent(w, case.resource, r, shape) for r in ordered(case.resource, rows, params.get("sort"))]


def get(client: httpx.Client, path: str, pairs: Pairs) -> Any:
    return client.get(f"{API}/{path}?{encode(pairs)}")


# --- the conformance table ------------------------------------------------------------------------------------------

A_ID = "{alice}"
T = "tasks"
G = "goals"


def status_in(*values: str) -> Pred:
    return lambda r, _w: r["status"] in values


def goal_in(*names: str) -> Pred:
    return lambda r, w: r["goal_id"] in {w.id(n) for n in names}


def title_has(needle: str) -> Pred:
    return lambda r, _w: needle.lower() in r["title"].lower()


def title_starts(prefix: str) -> Pred:
    return lambda r, _w: r["title"].startswith(prefix)


def tags_hold(*tags: str) -> Pred:
    return lambda r, _w: r["class_tags"] is not None and set(tags) <= set(r["class_tags"])


def of_user(name: str, then: Pred = always) -> Pred:
    return lambda r, w: r["user_id"] == w.id(name) and then(r, w)


def both(*preds: Pred) -> Pred:
    return lambda r, w: all(p(r, w) for p in preds)


def created(op: Callable[[datetime, datetime], bool], index: int) -> Pred:
    return lambda r, w: op(at(r["created_at"]), at(w.names[f"created_{index}"]))


CASES: list[Case] = [
    # eq
    Case(T, "status=pending", status_in("pending")),
    Case(T, "user_id={alice}&status=done", of_user("alice", status_in("done"))),
    Case(T, "goal_id={g_run}", goal_in("g_run")),
    Case(T, "duration_minutes=30", lambda r, _w: r["duration_minutes"] == 30),
    Case(G, "status=active", status_in("active")),
    # ne: a row whose value is null is "not the given value"
    Case(T, "status__ne=done", lambda r, _w: r["status"] != "done"),
    Case(T, "user_id={bob}&status__ne=missed", of_user("bob", lambda r, _w: r["status"] != "missed")),
    Case(G, "status__ne=active", lambda r, _w: r["status"] != "active"),
    # in: comma-separated, repeated, empty
    Case(T, "status__in=pending,missed", status_in("pending", "missed")),
    Case(T, "status__in=pending&status__in=missed,done", status_in("pending", "missed", "done")),
    Case(T, "status__in=pending,pending", status_in("pending")),
    Case(T, "goal_id__in={g_run},{g_read}", goal_in("g_run", "g_read")),
    Case(T, "goal_id__in={g_greek}&goal_id__in={g_money}", goal_in("g_greek", "g_money")),
    Case(G, "status__in=completed,pipeline,abandoned", status_in("completed", "pipeline", "abandoned")),
    Case(
        G, "parent_goal_id__in={g_money},{g_run}", lambda r, w: r["parent_goal_id"] in (w.id("g_money"), w.id("g_run"))
    ),
    Case("users", "email__in=alice@example.com,carol@example.com", lambda r, _w: r["email"] == "alice@example.com"),
    Case("notification_log", "channel__in=whatsapp,call", lambda r, _w: r["channel"] in ("whatsapp", "call")),
    Case("notification_log", "channel__ne=push", lambda r, _w: r["channel"] != "push"),
    Case(
        "conversations", "context_type__in=task,onboarding", lambda r, _w: r["context_type"] in ("task", "onboarding")
    ),
    Case("conversations", "context_type__ne=goal", lambda r, _w: r["context_type"] != "goal"),
    Case("patterns", "pattern_type__in=sleep,focus", lambda r, _w: r["pattern_type"] in ("sleep", "focus")),
    # isnull
    Case(T, "goal_id__isnull=true", lambda r, _w: r["goal_id"] is None),
    Case(T, "goal_id__isnull=false", lambda r, _w: r["goal_id"] is not None),
    Case(T, "duration_minutes__isnull=true", lambda r, _w: r["duration_minutes"] is None),
    Case(T, "goal_id__isnull=true&user_id={bob}", of_user("bob", lambda r, _w: r["goal_id"] is None)),
    Case(T, "scheduled_at__isnull=true", lambda r, _w: r["scheduled_at"] is None),
    Case(T, "scheduled_at__isnull=false", lambda r, _w: r["scheduled_at"] is not None),
    Case(T, "completed_at__isnull=false", lambda r, _w: r["completed_at"] is not None),
    Case(G, "parent_goal_id__isnull=true", lambda r, _w: r["parent_goal_id"] is None),
    Case(G, "activated_at__isnull=true", lambda r, _w: r["activated_at"] is None),
    Case(G, "completed_at__isnull=false", lambda r, _w: r["completed_at"] is not None),
    Case("notification_log", "sent_at__isnull=true", lambda r, _w: r["sent_at"] is None),
    Case("conversations", "last_message_at__isnull=false", lambda r, _w: r["last_message_at"] is not None),
    # ranges on datetimes: offsets and naive (= UTC) values, nulls never match
    Case(T, "scheduled_at__gte=2030-01-01T03:00:00Z", on("scheduled_at", lambda v: v >= at(hour(3)))),
    Case(T, "scheduled_at__gt=2030-01-01T03:00:00Z", on("scheduled_at", lambda v: v > at(hour(3)))),
    Case(T, "scheduled_at__lt=2030-01-01T03:00:00Z", on("scheduled_at", lambda v: v < at(hour(3)))),
    Case(T, "scheduled_at__lte=2030-01-01T03:00:00Z", on("scheduled_at", lambda v: v <= at(hour(3)))),
    Case(T, "scheduled_at__lte=2030-01-01T04:30:00", on("scheduled_at", lambda v: v <= at(hour(4, 30)))),
    Case(
        T,
        "scheduled_at__gte=2030-01-01T05:00:00+02:00&scheduled_at__lt=2030-01-01T07:00:00Z",
        on("scheduled_at", lambda v: at(hour(3)) <= v < at(hour(7))),
    ),
    Case(
        T,
        "scheduled_at__gt=2030-01-01T04:30:00.000001Z&scheduled_at__lte=2030-01-01T08:30:00+00:00",
        on("scheduled_at", lambda v: at("2030-01-01T04:30:00.000001Z") < v <= at(hour(8, 30))),
    ),
    Case(T, "completed_at__gte=2030-01-02T00:20:00Z", on("completed_at", lambda v: v >= at("2030-01-02T00:20:00Z"))),
    Case(T, "completed_at__lt=2030-01-02T00:20:00Z", on("completed_at", lambda v: v < at("2030-01-02T00:20:00Z"))),
    Case(T, "created_at__gte={created_10}", created(lambda a, b: a >= b, 10)),
    Case(T, "created_at__lt={created_10}", created(lambda a, b: a < b, 10)),
    Case(
        T,
        "created_at__gt={created_10}&created_at__lte={created_20}",
        both(created(lambda a, b: a > b, 10), created(lambda a, b: a <= b, 20)),
    ),
    Case(G, "activated_at__gte=2030-01-01T05:00:00Z", on("activated_at", lambda v: v >= at(hour(5)))),
    Case(G, "activated_at__lt=2030-01-01T05:00:00Z", on("activated_at", lambda v: v < at(hour(5)))),
    Case(G, "completed_at__lt=2030-01-04T00:00:00Z", on("completed_at", lambda v: v < at("2030-01-04T00:00:00Z"))),
    Case("notification_log", "sent_at__gte=2030-01-01T05:00:00Z", on("sent_at", lambda v: v >= at(hour(5)))),
    Case("notification_log", "sent_at__lt=2030-01-01T05:00:00Z", on("sent_at", lambda v: v < at(hour(5)))),
    Case(
        "conversations", "last_message_at__gte=2030-01-01T05:00:00Z", on("last_message_at", lambda v: v >= at(hour(5)))
    ),
    Case("conversations", "last_message_at__lt=2030-01-01T05:00:00Z", on("last_message_at", lambda v: v < at(hour(5)))),
    # ranges on numbers
    Case(T, "duration_minutes__gt=15", on("duration_minutes", lambda v: v > 15)),
    Case(T, "duration_minutes__gte=30", on("duration_minutes", lambda v: v >= 30)),
    Case(T, "duration_minutes__lt=30", on("duration_minutes", lambda v: v < 30)),
    Case(T, "duration_minutes__gte=30&duration_minutes__lte=30", on("duration_minutes", lambda v: v == 30)),
    Case("patterns", "confidence__gte=0.5", on("confidence", lambda v: v >= 0.5)),
    Case("patterns", "confidence__lte=0.5", on("confidence", lambda v: v <= 0.5)),
    Case("patterns", "confidence__gte=0.2&confidence__lte=0.6", on("confidence", lambda v: 0.2 <= v <= 0.6)),
    # contains (list fields): every given value
    Case(G, "class_tags__contains=health", tags_hold("health")),
    Case(G, "class_tags__contains=health,learning", tags_hold("health", "learning")),
    Case(G, "class_tags__contains=health&class_tags__contains=sport", tags_hold("health", "sport")),
    Case(G, "class_tags__contains=sport,mind,health", tags_hold("sport", "mind", "health")),
    Case(G, "class_tags__contains=nothing", tags_hold("nothing")),
    # icontains: Unicode case folding, % and _ literal
    Case(T, "title__icontains=äpfel", title_has("äpfel")),
    Case(T, "title__icontains=ÄPFEL", title_has("ÄPFEL")),
    Case(T, "title__icontains=äöü", title_has("äöü")),
    Case(T, "title__icontains=σοφ", title_has("σοφ")),
    Case(T, "title__icontains=ΣΟΦ", title_has("ΣΟΦ")),
    Case(T, "title__icontains=ж", title_has("ж")),
    Case(T, "title__icontains=жУК", title_has("жУК")),
    Case(T, "title__icontains=RUN", title_has("RUN")),
    Case(T, "title__icontains=%", title_has("%")),
    Case(T, "title__icontains=100%", title_has("100%")),
    Case(T, "title__icontains=_", title_has("_")),
    Case(T, "title__icontains=a_b", title_has("a_b")),
    Case(T, "title__icontains=%_", title_has("%_")),
    Case(T, "title__icontains=0 d", title_has("0 d")),
    Case(G, "title__icontains=ÄRGER", title_has("ÄRGER")),
    Case(G, "title__icontains=%", title_has("%")),
    Case(G, "title__icontains=_", title_has("_")),
    # startswith: case-sensitive prefix, % and _ literal
    Case(T, "title__startswith=Run", title_starts("Run")),
    Case(T, "title__startswith=run", title_starts("run")),
    Case(T, "title__startswith=RUN", title_starts("RUN")),
    Case(T, "title__startswith=Ä", title_starts("Ä")),
    Case(T, "title__startswith=ä", title_starts("ä")),
    Case(T, "title__startswith=10_", title_starts("10_")),
    Case(T, "title__startswith=100%", title_starts("100%")),
    Case(T, "title__startswith=a_", title_starts("a_")),
    Case(T, "title__startswith=%", title_starts("%")),
    Case(G, "title__startswith=Save", title_starts("Save")),
    Case(G, "title__startswith=save", title_starts("save")),
    # sort: nulls last both ways, id breaks ties in the first term's direction, several keys
    Case(T, "", always),
    Case(T, "sort=scheduled_at", always),
    Case(T, "sort=-scheduled_at", always),
    Case(T, "sort=duration_minutes,-scheduled_at", always),
    Case(T, "sort=-duration_minutes,scheduled_at", always),
    Case(T, "sort=-completed_at", always),
    Case(T, "sort=completed_at,duration_minutes", always),
    Case(T, "sort=status,-duration_minutes", always),
    Case(T, "sort=-status", always),
    Case(T, "sort=goal_id", always),
    Case(T, "sort=-goal_id,scheduled_at", always),
    Case(T, "sort=id", always),
    Case(T, "sort=-id", always),
    Case(T, "sort=created_at", always),
    Case(T, "sort=title&user_id={alice}", of_user("alice")),
    Case(T, "sort=-title,scheduled_at&user_id={alice}", of_user("alice")),
    Case(T, "sort=title,-duration_minutes,scheduled_at&user_id={alice}", of_user("alice")),
    Case(T, "status__in=pending,missed&sort=-scheduled_at", status_in("pending", "missed")),
    Case(
        T,
        "user_id={alice}&status__in=pending,missed,done&scheduled_at__gte=2030-01-01T02:00:00Z&sort=scheduled_at",
        both(of_user("alice", status_in("pending", "missed", "done")), on("scheduled_at", lambda v: v >= at(hour(2)))),
    ),
    Case(G, "sort=status", always),
    Case(G, "sort=-target_weeks,status", always),
    Case(G, "sort=parent_goal_id", always),
    Case("notification_log", "", always),
    Case("notification_log", "sort=sent_at", always),
    Case("users", "sort=-email", always),
    Case("conversations", "sort=-last_message_at", always),
    Case("conversations", "sort=context_type,last_message_at", always),
    Case("patterns", "", always),
    Case("patterns", "sort=confidence", always),
    Case("patterns", "sort=-confidence,pattern_type", always),
    Case("patterns", "sort=-pattern_type", always),
    # field selection (id always kept; sorting by a field that is not selected)
    Case(T, "fields=id,title,status", always),
    Case(T, "fields=title", always),
    Case(T, "fields=title,scheduled_at&sort=scheduled_at", always),
    Case(T, "fields=status&status__in=done&sort=-completed_at", status_in("done")),
    Case(G, "fields=class_tags&class_tags__contains=health", tags_hold("health")),
    # include: to-one (null when the reference is null), to-many (bounded), nested, prefixed embed filters
    Case(T, "include=goal", always),
    Case(T, "include=goal,user&user_id={bob}", of_user("bob")),
    Case(T, "include=goal.user&sort=scheduled_at", always),
    Case(T, "fields=title&include=goal", always),
    Case(G, "include=parent_goal,user", always),
    Case(G, "include=tasks", always),
    Case(G, "include=tasks&include_limit=5", always),
    Case(G, "include=tasks&include_limit=100&sort=-status", always),
    Case(G, "include=tasks&tasks.status__in=pending,missed", always, {"tasks": status_in("pending", "missed")}),
    Case(
        G,
        "include=tasks&tasks.scheduled_at__gte=2030-01-01T05:00:00Z&tasks.goal_id__isnull=false&include_limit=3",
        always,
        {"tasks": on("scheduled_at", lambda v: v >= at(hour(5)))},
    ),
    Case(G, "include=tasks,user&status=active&fields=title", status_in("active")),
    Case("users", "include=goals", always),
    Case("users", "include=goals,tasks&include_limit=100", always),
    Case("users", "include=goals.tasks", always),
    Case("users", "include=goals.tasks&goals.tasks.status=pending", always, {"goals.tasks": status_in("pending")}),
    # an embed filter alone brings its embed (and the embeds on its path) in
    Case(G, "tasks.status__in=pending,missed", always, {"tasks": status_in("pending", "missed")}),
    Case("users", "goals.tasks.status=pending", always, {"goals.tasks": status_in("pending")}),
    Case(
        "users",
        "include=goals.tasks,tasks&goals.status=active&goals.tasks.status__in=pending,done&tasks.title__icontains=ä"
        "&include_limit=4",
        always,
        {"goals": status_in("active"), "goals.tasks": status_in("pending", "done"), "tasks": title_has("ä")},
    ),
    Case("notification_log", "include=task.goal.user", always),
    Case("notification_log", "include=task.goal,task.user", always),
]


def check_page_keys(page: Any, where: str) -> list[str]:
    return [] if set(page) == PAGE_KEYS else [f"{where}: page keys {sorted(page)}"]


def check_full(client: httpx.Client, case: Case, w: World) -> list[str]:
    """The whole result on one page: exactly the expected items, the exact total, no next cursor."""
    response = get(client, PATHS[case.resource], [*parse(case.query, w), ("limit", "500")])
    if response.status_code != 200:
        return [f"{case}: {response.status_code} {response.text[:300]}"]
    page = response.json()
    expected = expected_items(case, w)
    problems = check_page_keys(page, str(case))
    if page["items"] != expected:
        problems.append(describe(case, w, expected, page["items"]))
    if page["total"] != len(expected):
        problems.append(f"{case}: total {page['total']}, expected {len(expected)}")
    if page.get("next_cursor") is not None or page["has_next"]:
        problems.append(f"{case}: a single complete page has next_cursor={page.get('next_cursor')!r}")
    return problems


def walk(client: httpx.Client, case: Case, w: World) -> tuple[list[Row], list[str]]:
    """Follow ``next_cursor`` to the end, changing ``limit`` between pages; the items seen and any problems."""
    base = parse(case.query, w)
    seen: list[Row] = []
    problems: list[str] = []
    cursor: str | None = None
    for number, limit in enumerate(itertools.islice(itertools.cycle(WALK_LIMITS), 200)):
        pairs = [*base, ("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        response = get(client, PATHS[case.resource], pairs)
        if response.status_code != 200:
            return seen, [f"{case}: page {number + 1} of the walk: {response.status_code} {response.text[:300]}"]
        page = response.json()
        problems += check_page_keys(page, f"{case} (walk page {number + 1})")
        seen += page["items"]
        if len(page["items"]) > limit:
            problems.append(f"{case}: walk page {number + 1} has {len(page['items'])} items over limit {limit}")
        if cursor is not None and page["page"] is not None:
            problems.append(f"{case}: a cursor page says page={page['page']!r} (null expected)")
        if page["has_next"] != (page["next_cursor"] is not None):
            problems.append(f"{case}: has_next={page['has_next']} with next_cursor={page['next_cursor']!r}")
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, problems
        if not page["items"]:
            return seen, [*problems, f"{case}: an empty page {number + 1} still gives a next_cursor"]
    return seen, [*problems, f"{case}: the walk does not end within 200 pages"]


def check_walk(client: httpx.Client, case: Case, w: World) -> list[str]:
    seen, problems = walk(client, case, w)
    expected = expected_items(case, w)
    if not problems and seen != expected:
        problems.append("walk: " + describe(case, w, expected, seen))
    return problems


def first_difference(expected: Any, got: Any, path: str = "") -> tuple[str, Any, Any]:
    """Where two JSON values first differ (a path like ``[0].goals[1].tasks``), and the two values there."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(expected) != set(got):
            return f"{path} keys", sorted(expected), sorted(got)
        key = next(k for k in expected if expected[k] != got[k])
        return first_difference(expected[key], got[key], f"{path}.{key}")
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        n = next(n for n, (e, g) in enumerate(zip(expected, got, strict=True)) if e != g)
        return first_difference(expected[n], got[n], f"{path}[{n}]")
    return path or "top", expected, got


def describe(case: Case, w: World, expected: list[Row], got: list[Row]) -> str:
    want, have = [r["id"] for r in expected], [r["id"] for r in got]
    if want == have:
        where, e, g = first_difference(expected, got)
        return f"{case}: same rows, different content, first at {where}:\n  expected {e!r:.600}\n  got      {g!r:.600}"
    missing = sorted(set(w.label(want)) - set(w.label(have)))
    extra = sorted(set(w.label(have)) - set(w.label(want)))
    return f"{case}:\n  expected {w.label(want)}\n  got      {w.label(have)}\n  missing {missing}, unexpected {extra}"


@pytest.fixture
def world(client: TestClient) -> World:  # type: ignore[type-arg]
    return build_world(client)


def test_the_data_set_exercises_every_case(world: World) -> None:
    """Guard on the table itself: most filters keep some rows and drop others (else they prove little)."""
    trivial = []
    for case in CASES:
        kept = sum(1 for r in world.rows[case.resource] if case.where(r, world))
        if case.where is not always and not (0 < kept < len(world.rows[case.resource])):
            trivial.append((str(case), kept))
    assert {q for q, _ in trivial} <= {
        "goals?class_tags__contains=nothing",
        "tasks?title__startswith=10_",
        "goals?title__startswith=save",
    }, trivial
    g_run_tasks = [t for t in world.rows["tasks"] if t["goal_id"] == world.id("g_run")]
    assert len(g_run_tasks) > 20  # the default include_limit cuts


def test_conformance_table_one_page(client: TestClient, world: World) -> None:  # type: ignore[type-arg]
    problems = [p for case in CASES for p in check_full(client, case, world)]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_conformance_table_cursor_walk(client: TestClient, world: World) -> None:  # type: ignore[type-arg]
    problems = [p for case in CASES for p in check_walk(client, case, world)]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_cursor_walk_without_counting(client: TestClient, world: World) -> None:  # type: ignore[type-arg]
    case = Case(T, "count=false&status__ne=done&sort=scheduled_at", lambda r, _w: r["status"] != "done")
    seen, problems = walk(client, case, world)
    assert not problems, problems
    assert seen == expected_items(case, world)
    page = get(client, "tasks", [*parse(case.query, world), ("limit", "2")]).json()
    assert page["total"] is None


# --- one row, and by-timerange ----------------------------------------------------------------------------------------


ONE_ROW_CASES: list[tuple[str, str, str, dict[str, Pred]]] = [
    # (entity, the row's label, query, embed predicates): GET /{resource}/{id}?{query}
    (T, "a00", "fields=title,status", {}),
    (T, "a00", "fields=scheduled_at", {}),
    (T, "a00", "include=goal,user", {}),
    (T, "a03", "include=goal.user&fields=duration_minutes", {}),
    (T, "a19", "include=goal", {}),  # no goal: null
    (G, "g_under", "include=parent_goal,user,tasks", {}),
    (G, "g_run", "include=tasks", {}),
    (G, "g_run", "include=tasks&include_limit=2", {}),
    (G, "g_run", "include=tasks&tasks.status__in=done,cancelled", {"tasks": status_in("done", "cancelled")}),
    ("users", "alice", "include=goals,tasks", {}),
    (
        "users",
        "alice",
        "include=goals.tasks&goals.tasks.status=pending&fields=email",
        {"goals.tasks": status_in("pending")},
    ),
    ("notification_log", "n1", "include=task.goal.user", {}),
]


def test_one_row_takes_fields_and_include(client, world):
    problems = []
    for entity, label, query, embeds in ONE_ROW_CASES:
        row = next(r for r in world.rows[entity] if world.labels[r["id"]] == label)
        params = dict(parse(query, world))
        fields = set(params["fields"].split(",")) if "fields" in params else None
        shape = Shape(fields, include_tree(params.get("include")), int(params.get("include_limit", "20")), embeds)
        path = f"{PATHS[entity]}/{row['id']}"
        response = get(client, path, parse(query, world))
        if response.status_code != 200:
            problems.append(f"{entity}/{label}?{query}: {response.status_code} {response.text[:300]}")
            continue
        expected = represent(world, entity, row, shape)
        if response.json() != expected:
            where, e, g = first_difference(expected, response.json())
            problems.append(
                f"{entity}/{label}?{query}: first difference at {where}:\n  expected {e!r:.300}\n  got      {g!r:.300}"
            )
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_by_timerange_takes_the_tasks_filters_and_fields(client, world):
    window = [("user_id", world.id("alice")), ("start_at", hour(2)), ("end_at", hour(8))]
    response = get(client, "tasks/by-timerange", [*window, ("status__in", "pending,missed"), ("fields", "title")])
    assert response.status_code == 200, response.text
    alice = [t for t in world.rows["tasks"] if t["user_id"] == world.id("alice")]
    chosen = [
        t
        for t in alice
        if t["status"] in ("pending", "missed")
        and t["scheduled_at"] is not None
        and at(hour(2)) <= at(t["scheduled_at"]) <= at(hour(8))
    ]
    got = response.json()
    assert sorted(r["id"] for r in got) == sorted(t["id"] for t in chosen)
    assert all(set(r) == {"id", "title"} for r in got), got
    earliest_first = [at(next(t for t in chosen if t["id"] == r["id"])["scheduled_at"]) for r in got]
    assert earliest_first == sorted(earliest_first)


def test_by_timerange_unknown_field_is_422(client):
    window = {"user_id": factories.user(client)["id"], "start_at": hour(2), "end_at": hour(8), "fields": "nope"}
    assert_validation_error(client.get(f"{API}/tasks/by-timerange", params=window), "fields")


# --- errors -----------------------------------------------------------------------------------------------------------


def assert_validation_error(response: Any, name: str) -> dict[str, Any]:
    body = assert_problem(response, 422, "validation-error")
    assert name in [e["field"] for e in body["errors"]], body
    return body


def assert_invalid_cursor(response: Any) -> None:
    body = assert_problem(response, 422, "invalid-cursor")
    assert [e["field"] for e in body["errors"]] == ["cursor"], body


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("tasks", "status__foo=pending", "status__foo"),
        ("tasks", "status__=pending", "status__"),
        ("tasks", "title__gte=b&user_id__gt=00000000-0000-0000-0000-000000000000", "user_id__gt"),
        ("tasks", "description__icontains=x", "description__icontains"),
        ("tasks", "title__contains=run", "title__contains"),
        ("tasks", "duration_minutes__ne=3", "duration_minutes__ne"),
        ("tasks", "goal_id__gt=00000000-0000-0000-0000-000000000000", "goal_id__gt"),
        ("tasks", "nope__in=a", "nope__in"),
        ("tasks", "sort=nope", "sort"),
        ("tasks", "sort=-nope", "sort"),
        ("tasks", "sort=title,nope", "sort"),
        ("tasks", "sort=shared_with_goal_ids", "sort"),
        ("users", "sort=profile", "sort"),
        ("tasks", "fields=nope", "fields"),
        ("tasks", "fields=title,nope", "fields"),
        ("tasks/00000000-0000-7000-8000-000000000000", "fields=nope", "fields"),
        ("tasks", "include=nope", "include"),
        ("tasks", "include=goal.nope", "include"),
        ("tasks", "include=goals", "include"),
        ("users", "include=goal", "include"),
        ("users", "include=goals.tasks.goal.user", "include"),
        ("tasks/00000000-0000-7000-8000-000000000000", "include=nope", "include"),
        ("tasks", "scheduled_at__gte=yesterday", "scheduled_at__gte"),
        ("tasks", "scheduled_at__lt=2030-13-01T00:00:00Z", "scheduled_at__lt"),
        ("tasks", "created_at__gt=2030-01-01T25:00:00Z", "created_at__gt"),
        ("tasks", "duration_minutes__gt=abc", "duration_minutes__gt"),
        ("tasks", "goal_id__isnull=maybe", "goal_id__isnull"),
        ("tasks", "goal_id__in=not-a-uuid", "goal_id__in"),
        ("tasks", "status__in=pending,scheduled", "status__in"),
        ("tasks", "limit=1&limit=2", "limit"),
        ("tasks", "status=pending&status=done", "status"),
        ("tasks", "scheduled_at__gte=2030-01-01T00:00:00Z&scheduled_at__gte=2030-01-02T00:00:00Z", "scheduled_at__gte"),
        ("tasks", "sort=title,-title", "sort"),
        ("tasks", "cursor=a&cursor=b", "cursor"),
        ("tasks", "count=false&count=true", "count"),
        ("tasks", "include_limit=5&include_limit=6&include=user", "include_limit"),
        ("goals", "include=tasks&include_limit=0", "include_limit"),
        ("goals", "include=tasks&include_limit=101", "include_limit"),
        ("goals", "include=tasks&include_limit=x", "include_limit"),
        ("tasks", "status__in=", "status__in"),  # the empty string, which is no status
        ("tasks", "status__in=pending,", "status__in"),
        ("tasks", "goal_id__in=", "goal_id__in"),
        ("goals", "include=tasks&tasks.status__foo=pending", "tasks.status__foo"),
        ("goals", "include=tasks&tasks.nope=1", "tasks.nope"),
        ("tasks", "include=goal&goal.status=active", "goal.status"),
        ("users", "include=goals&goals.tasks.status__ne=later", "goals.tasks.status__ne"),
    ],
)
def test_bad_query_is_422_naming_the_parameter(client, path, query, name):
    assert_validation_error(client.get(f"{API}/{path}?{encode(parse(query, World()))}"), name)


def uuids(count: int) -> list[str]:
    return [f"00000000-0000-7000-8000-{n:012d}" for n in range(count)]


def test_in_takes_at_most_100_values(client):
    user = factories.user(client)["id"]
    goal = factories.goal(client, user)["id"]
    wanted = factories.task(client, user, goal_id=goal)["id"]
    factories.task(client, user)
    hundred = client.get(f"{API}/tasks", params={"goal_id__in": ",".join([*uuids(99), goal])})
    assert hundred.status_code == 200, hundred.text
    assert [item["id"] for item in hundred.json()["items"]] == [wanted]
    too_many = client.get(f"{API}/tasks", params={"goal_id__in": ",".join([*uuids(100), goal])})
    assert_validation_error(too_many, "goal_id__in")
    repeated = [("goal_id__in", ",".join(uuids(51))), ("goal_id__in", ",".join([*uuids(100)[51:], goal]))]
    assert_validation_error(client.get(f"{API}/tasks", params=repeated), "goal_id__in")


CURSOR_QUERY = [("status__in", "pending,missed"), ("sort", "scheduled_at")]


@pytest.fixture
def cursor(client: TestClient) -> str:  # type: ignore[type-arg]
    """A next_cursor of ``GET /tasks?status__in=pending,missed&sort=scheduled_at&limit=1`` over four rows."""
    user = factories.user(client)["id"]
    for n, status in enumerate(["pending", "missed", "pending", "done", "pending"]):
        factories.task(client, user, status=status, scheduled_at=hour(n))
    page = get(client, "tasks", [*CURSOR_QUERY, ("limit", "1")]).json()
    assert isinstance(page["next_cursor"], str), page
    return str(page["next_cursor"])


def test_the_cursor_fixture_is_accepted_as_is(client, cursor):
    response = get(client, "tasks", [*CURSOR_QUERY, ("cursor", cursor), ("limit", "2")])
    assert response.status_code == 200, response.text
    assert [i["scheduled_at"] for i in response.json()["items"]] == [hour(1), hour(2)]


@pytest.mark.parametrize("skip", ["0", "1"])
def test_cursor_with_skip_is_422_naming_cursor(client, cursor, skip):
    assert_validation_error(get(client, "tasks", [*CURSOR_QUERY, ("cursor", cursor), ("skip", skip)]), "cursor")


@pytest.mark.parametrize(
    "pairs",
    [
        [("status__in", "pending"), ("sort", "scheduled_at")],
        [("status__in", "pending,missed,done"), ("sort", "scheduled_at")],
        [("sort", "scheduled_at")],
        [*CURSOR_QUERY, ("user_id", "00000000-0000-7000-8000-000000000001")],
        [*CURSOR_QUERY, ("scheduled_at__gte", hour(0))],
        [("status__in", "pending,missed"), ("sort", "-scheduled_at")],
        [("status__in", "pending,missed"), ("sort", "scheduled_at,title")],
        [("status__in", "pending,missed")],
        [("status__ne", "done"), ("sort", "scheduled_at")],
    ],
    ids=["fewer-values", "more-values", "filter-dropped", "filter-added", "range-added", "sort-reversed",
         "sort-extended", "sort-dropped", "other-operator"],
)  # fmt: skip
def test_cursor_of_another_query_is_invalid_cursor(client, cursor, pairs):
    assert_invalid_cursor(get(client, "tasks", [*pairs, ("cursor", cursor)]))


def test_cursor_of_another_resource_is_invalid_cursor(client, cursor):
    assert_invalid_cursor(get(client, "goals", [("sort", "status"), ("cursor", cursor)]))


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes, like: str) -> str:
    encoded = base64.urlsafe_b64encode(data).decode()
    return encoded if like.endswith("=") else encoded.rstrip("=")


def _bump(value: Any) -> Any:
    """``value`` with its first leaf changed (a string gets a character more, a number one more)."""
    if isinstance(value, dict) and value:
        key = next(iter(value))
        return {**value, key: _bump(value[key])}
    if isinstance(value, list) and value:
        return [_bump(value[0]), *value[1:]]
    if isinstance(value, bool) or value is None:
        return not value
    if isinstance(value, int | float):
        return value + 1
    return f"{value}0"


def re_encoded(cursor: str) -> Iterator[str]:
    """The cursor with a value inside it changed and encoded again, for each segment that is base64 JSON.

    An unsigned cursor would accept such an edit: the service must notice (a signature or a check of its own).
    """
    segments = cursor.split(".")
    for n, segment in enumerate(segments):
        try:
            payload = json.loads(_b64decode(segment))
        except ValueError:
            continue
        edited = _b64encode(json.dumps(_bump(payload), separators=(",", ":")).encode(), segment)
        yield ".".join([*segments[:n], edited, *segments[n + 1 :]])


def tampered(cursor: str) -> Iterator[tuple[str, bool]]:
    """Changed cursors, each with whether the change may decode to the same bytes (the last character's spare bits)."""
    middle = len(cursor) // 2
    for position in (0, middle, len(cursor) - 1):
        replacement = next(c for c in "AbZ9_-" if c != cursor[position])
        yield cursor[:position] + replacement + cursor[position + 1 :], position == len(cursor) - 1
    yield cursor[:middle], False
    yield cursor + "A", False
    yield cursor + cursor, False
    yield "garbage", False
    yield "eyJ4IjoxfQ", False  # base64url of {"x":1}
    for edited in re_encoded(cursor):
        yield edited, False


def test_tampered_cursor_is_invalid_cursor(client, cursor):
    same = get(client, "tasks", [*CURSOR_QUERY, ("cursor", cursor)])
    for changed, maybe_equivalent in tampered(cursor):
        response = get(client, "tasks", [*CURSOR_QUERY, ("cursor", changed)])
        if maybe_equivalent and response.status_code == 200:
            assert response.json() == same.json(), changed  # the same bytes: the same cursor
            continue
        assert_invalid_cursor(response)


def test_cursor_with_a_user_filter_cannot_be_replayed_for_another_user(client):
    alice, bob = factories.user(client)["id"], factories.user(client)["id"]
    for user in (alice, bob):
        for n in range(3):
            factories.task(client, user, scheduled_at=hour(n))
    page = get(client, "tasks", [("user_id", alice), ("sort", "scheduled_at"), ("limit", "1")]).json()
    assert_invalid_cursor(
        get(client, "tasks", [("user_id", bob), ("sort", "scheduled_at"), ("cursor", page["next_cursor"])])
    )


# --- operators the project manifest does not open: ne over nulls, ranges on strings, in on datetimes -----------------

ITEMS_MANIFEST = """
version: 1
resources:
  items:
    description: Rows for the operators resources.yaml leaves closed.
    fields:
      label: {type: string, required: true, filter: [eq, ne, in, gt, gte, lt, lte, startswith, icontains]}
      size: {type: integer, filter: [eq, ne, in, gt, gte, lt, lte, isnull]}
      note: {type: string, filter: [ne, isnull]}
      ratio: {type: float, filter: [ne, gt, lte]}
      due_at: {type: datetime, filter: [ne, in, gte]}
    order_by: [created_at desc]
"""
LABELS = ("apple", "banana", "cherry", "date", "elder", "fig")

ITEM_CASES: list[Case] = [
    Case("items", "size__ne=3", lambda r, _w: r["size"] != 3),
    Case("items", "note__ne=x", lambda r, _w: r["note"] != "x"),
    Case("items", "ratio__ne=0.5", lambda r, _w: r["ratio"] != 0.5),
    Case(
        "items", "due_at__ne=2030-01-01T02:00:00Z", lambda r, _w: r["due_at"] is None or at(r["due_at"]) != at(hour(2))
    ),
    Case("items", "label__ne=apple&size__ne=1", lambda r, _w: r["label"] != "apple" and r["size"] != 1),
    Case("items", "size__in=1,3", lambda r, _w: r["size"] in (1, 3)),
    Case("items", "label__in=fig,apple", lambda r, _w: r["label"] in ("fig", "apple")),
    Case(
        "items",
        "due_at__in=2030-01-01T01:00:00Z,2030-01-01T05:00:00+02:00",
        lambda r, _w: r["due_at"] is not None and at(r["due_at"]) in (at(hour(1)), at(hour(3))),
    ),
    Case("items", "label__gte=banana&label__lt=elder", lambda r, _w: "banana" <= r["label"] < "elder"),
    Case("items", "label__gt=cherry", lambda r, _w: r["label"] > "cherry"),
    Case("items", "label__lte=cherry", lambda r, _w: r["label"] <= "cherry"),
    Case("items", "size__gt=2", on("size", lambda v: v > 2)),
    Case("items", "size__isnull=true", lambda r, _w: r["size"] is None),
    Case("items", "ratio__gt=0.25&ratio__lte=0.75", on("ratio", lambda v: 0.25 < v <= 0.75)),
    Case("items", "note__isnull=false&sort=-note", lambda r, _w: r["note"] is not None),
    Case("items", "sort=size", always),
    Case("items", "sort=-size,label", always),
    Case("items", "sort=-ratio,label", always),
    Case("items", "sort=label,-due_at", always),
    Case("items", "sort=note", always),
]


@pytest.fixture(scope="module")
def items_api(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, World]]:
    """A live server of a one-resource manifest (made and migrated with the CLI), holding twelve rows."""
    folder = tmp_path_factory.mktemp(f"items-{backend}")
    manifest = folder / "resources.yaml"
    manifest.write_text(ITEMS_MANIFEST, encoding="utf-8")
    made = subprocess.run(
        [str(FLUX_DAO), "--manifest", str(manifest), "makemigrations", "-m", "items"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    with (
        fresh_database(backend, folder, "items") as url,
        live_server(url, folder, env={"SERVICE_API_KEYS": API_KEY}, manifest=manifest) as server,
        httpx.Client(base_url=server.base, headers={KEY_HEADER: API_KEY}, timeout=30) as api,
    ):
        w = World()
        for n in range(12):
            body = {
                "label": LABELS[n % 6],
                "size": None if n % 4 == 2 else n % 5,
                "note": (None, "x", "y")[n % 3],
                "ratio": None if n % 5 == 4 else (0.25, 0.5, 0.75)[n % 3],
                "due_at": None if n % 6 == 5 else hour(n % 4),
            }
            response = api.post(f"{API}/items", json=body)
            assert response.status_code == 201, response.text
            w.add("items", f"i{n:02d}", response.json())
        yield api, w


def test_items_table_one_page(items_api):
    api, w = items_api
    problems = [p for case in ITEM_CASES for p in check_full(api, case, w)]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_items_table_cursor_walk(items_api):
    api, w = items_api
    problems = [p for case in ITEM_CASES for p in check_walk(api, case, w)]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
