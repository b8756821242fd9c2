"""The query language's parser, without a server: query strings -> parsed queries, plans and problems.

Each test feeds a ``MultiDict`` (what ``request.query_params`` holds) to the ``QueryParser`` of a route built from the
project's ``resources.yaml``, exactly as the handlers build theirs, and checks what comes out: conditions with values
converted to their column's type, the order, the read plan, or the problems, each named by its query parameter.
"""

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode
from uuid import UUID

import pytest
from litestar.datastructures import MultiDict
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Parameter, Reference, Schema

from flux_dao.errors import InvalidCursorError, InvalidInputError
from flux_dao.http.cursor import CursorSeal
from flux_dao.http.query_docs import parameters
from flux_dao.http.query_tables import build_resource_queries
from flux_dao.http.request import (
    DEFAULT_INCLUDE_LIMIT,
    EVERY_ROW,
    MAX_IN_VALUES,
    ListRequest,
    ParsedQuery,
    QueryParser,
)
from flux_dao.manifest import load_manifest
from flux_dao.manifest.columns import OrderTerm
from flux_dao.manifest.names import enum_name
from flux_dao.manifest.spec import TimeRangeQuery
from flux_dao.query.plans import Condition, EmbedPlan, ReadPlan
from flux_dao.schema import build_resources
from flux_dao.schema.typemap import INT32_MAX, INT32_MIN

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = build_resources(load_manifest(ROOT / "resources.yaml"))
QUERIES = build_resource_queries((r.entity for r in RESOURCES.items), RESOURCES.embeds)
SEAL = CursorSeal("unit-test secret")

U1 = UUID("01940000-0000-7000-8000-000000000001")
U2 = UUID("01940000-0000-7000-8000-000000000002")
TASK_STATUSES = "pending, done, missed, rescheduled, cancelled"
ISO_8601 = "is not an ISO 8601 datetime (e.g. 2026-01-31T09:00:00Z)"


def query(text: str) -> MultiDict[str]:
    """What Litestar's ``request.query_params`` holds for ``text`` (blank values kept, ``+`` and ``%xx`` decoded)."""
    return MultiDict(parse_qsl(text, keep_blank_values=True))


def lister(resource: str) -> QueryParser:
    """The parser of ``GET /{resource}``."""
    return QueryParser(QUERIES[resource], listing=True, filtering=True)


def getter(resource: str) -> QueryParser:
    """The parser of ``GET /{resource}/{id}``."""
    return QueryParser(QUERIES[resource], listing=False, filtering=False)


def time_ranger() -> QueryParser:
    """The parser of ``GET /tasks/by-timerange``: its scope and window are its own parameters."""
    spec = QUERIES["tasks"].entity.queries["by-timerange"]
    assert isinstance(spec, TimeRangeQuery)
    own = (*spec.scope, spec.start, spec.end)
    return QueryParser(QUERIES["tasks"], listing=False, filtering=True, own=own)


def parse(parser: QueryParser, text: str) -> ParsedQuery:
    return parser.parse(query(text))


def problems(parser: QueryParser, text: str) -> list[tuple[str, str]]:
    """The (parameter, message) pairs the parser names, in its order."""
    with pytest.raises(InvalidInputError) as info:
        parser.parse(query(text))
    assert not isinstance(info.value, InvalidCursorError)
    return [(error.field, error.message) for error in info.value.errors]


def only_condition(resource: str, text: str) -> Condition:
    conditions = parse(lister(resource), text).conditions
    assert len(conditions) == 1, conditions
    return conditions[0]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --- each operator's parameter -> its condition -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "text", "expected"),
    [
        ("tasks", "status=pending", Condition("status", "eq", "pending")),
        ("tasks", "status__ne=done", Condition("status", "ne", "done")),
        ("tasks", "status__in=pending,missed", Condition("status", "in", ("pending", "missed"))),
        ("tasks", f"user_id={U1}", Condition("user_id", "eq", U1)),
        ("tasks", f"goal_id__in={U1},{U2}", Condition("goal_id", "in", (U1, U2))),
        ("tasks", "goal_id__isnull=true", Condition("goal_id", "isnull", True)),
        ("tasks", "goal_id__isnull=false", Condition("goal_id", "isnull", False)),
        ("tasks", "scheduled_at__gt=2026-01-31T09:00:00Z", Condition("scheduled_at", "gt", utc(2026, 1, 31, 9))),
        ("tasks", "completed_at__lte=2026-01-31T09:00:00Z", Condition("completed_at", "lte", utc(2026, 1, 31, 9))),
        ("tasks", "created_at__lt=2026-01-31T09:00:00Z", Condition("created_at", "lt", utc(2026, 1, 31, 9))),
        ("tasks", "duration_minutes=30", Condition("duration_minutes", "eq", 30)),
        ("tasks", "duration_minutes__gte=-5", Condition("duration_minutes", "gte", -5)),
        ("tasks", "duration_minutes__lt=%2B7", Condition("duration_minutes", "lt", 7)),
        ("tasks", "title__icontains=Run 5%_k", Condition("title", "icontains", "Run 5%_k")),
        ("tasks", "title__startswith=Rün", Condition("title", "startswith", "Rün")),
        (
            "tasks",
            f"shared_with_goal_ids__contains={U1},{U2}",
            Condition("shared_with_goal_ids", "contains", (U1, U2)),
        ),
        ("goals", "class_tags__contains=health,sleep", Condition("class_tags", "contains", ("health", "sleep"))),
        ("goals", "activated_at__isnull=true", Condition("activated_at", "isnull", True)),
        ("patterns", "confidence__gte=0.25", Condition("confidence", "gte", 0.25)),
        ("patterns", "confidence__lte=1", Condition("confidence", "lte", 1.0)),
        ("users", "email__in=a@x.io,b@x.io", Condition("email", "in", ("a@x.io", "b@x.io"))),
        ("notification_log", "channel__ne=call", Condition("channel", "ne", "call")),
    ],
)
def test_each_operator_parameter_gives_its_condition(resource: str, text: str, expected: Condition) -> None:
    found = only_condition(resource, text)
    assert found == expected
    values = found.value if isinstance(found.value, tuple) else (found.value,)
    wanted = expected.value if isinstance(expected.value, tuple) else (expected.value,)
    assert [type(v) for v in values] == [type(v) for v in wanted]  # 1 is not 1.0 is not True, a UUID is not text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-31T09:00:00Z", utc(2026, 1, 31, 9)),
        ("2026-01-31T09:00:00", utc(2026, 1, 31, 9)),  # naive = UTC
        ("2026-01-31T11:30:00+02:30", utc(2026, 1, 31, 9)),
        ("2026-01-31T04:00:00-05:00", utc(2026, 1, 31, 9)),
        ("2026-01-31T09:00:00.123456Z", utc(2026, 1, 31, 9, 0, 0, 123456)),
    ],
)
def test_datetime_values_are_utc_whatever_their_offset(raw: str, expected: datetime) -> None:
    value = only_condition("tasks", urlencode({"scheduled_at__gte": raw})).value
    assert value == expected
    assert value.tzinfo is UTC


def test_datetime_in_values_are_each_converted_to_utc() -> None:
    condition = only_condition("tasks", urlencode({"scheduled_at__gt": "2026-01-01T01:00:00+01:00"}))
    assert condition.value.tzinfo is UTC
    assert condition.value.hour == 0


@pytest.mark.parametrize(
    ("resource", "name", "raw", "message"),
    [
        ("tasks", "scheduled_at__gte", "yesterday", ISO_8601),
        ("tasks", "scheduled_at__lt", "2026-13-01T00:00:00Z", ISO_8601),
        ("tasks", "created_at__gt", "1767225600", ISO_8601),
        ("tasks", "scheduled_at__lt", "0001-01-01T00:00:00+01:00", "is out of range once converted to UTC"),
        ("tasks", "user_id", "not-a-uuid", "is not a UUID"),
        ("tasks", "goal_id__in", f"{U1},nope", "'nope' is not a UUID"),
        ("tasks", "status", "nope", f"is not one of {TASK_STATUSES}"),
        ("tasks", "status__ne", "PENDING", f"is not one of {TASK_STATUSES}"),  # enums are case-sensitive
        ("tasks", "status__in", "pending,nope", f"'nope' is not one of {TASK_STATUSES}"),
        ("tasks", "duration_minutes", str(INT32_MAX + 1), f"is out of range ({INT32_MIN}..{INT32_MAX})"),
        ("tasks", "duration_minutes__gt", str(INT32_MIN - 1), f"is out of range ({INT32_MIN}..{INT32_MAX})"),
        ("tasks", "duration_minutes", "1.5", "is not an integer"),
        ("tasks", "duration_minutes", "1e3", "is not an integer"),
        ("tasks", "duration_minutes", "thirty", "is not an integer"),
        ("tasks", "duration_minutes", "", "is not an integer"),
        ("tasks", "duration_minutes", "1" * 21, "is not an integer"),
        ("patterns", "confidence__gte", "high", "is not a number"),
        ("patterns", "confidence__gte", "nan", "is not a number"),
        ("patterns", "confidence__lte", "-inf", "is not a number"),
        ("tasks", "goal_id__isnull", "1", "is not `true` or `false`"),
        ("tasks", "goal_id__isnull", "True", "is not `true` or `false`"),
        ("tasks", "goal_id__isnull", "yes", "is not `true` or `false`"),
        ("tasks", "goal_id__isnull", "", "is not `true` or `false`"),
        ("tasks", "title__icontains", "a\x00b", "must not contain NUL (U+0000) characters"),
        ("tasks", "title__startswith", "\x00", "must not contain NUL (U+0000) characters"),
        ("users", "email", "a\x00@x.io", "must not contain NUL (U+0000) characters"),
        ("users", "email__in", "a@x.io,\x00", "'\\x00' must not contain NUL (U+0000) characters"),
        ("goals", "class_tags__contains", "ok,b\x00d", "'b\\x00d' must not contain NUL (U+0000) characters"),
        ("tasks", "shared_with_goal_ids__contains", "health", "'health' is not a UUID"),
    ],
)
def test_bad_values_are_named_by_their_parameter(resource: str, name: str, raw: str, message: str) -> None:
    assert problems(lister(resource), urlencode({name: raw})) == [(name, message)]


@pytest.mark.parametrize("value", [INT32_MIN, INT32_MAX, 0])
def test_int32_bounds_are_accepted(value: int) -> None:
    assert only_condition("tasks", f"duration_minutes={value}").value == value


def test_an_integer_with_a_trailing_newline_is_refused() -> None:
    assert problems(lister("tasks"), "duration_minutes=5%0A") == [("duration_minutes", "is not an integer")]


@pytest.mark.parametrize("raw", ["1_0", " 0.5"])
def test_a_number_is_read_as_written(raw: str) -> None:
    assert problems(lister("patterns"), urlencode({"confidence__gte": raw})) == [("confidence__gte", "is not a number")]


# --- in / contains: several values --------------------------------------------------------------------------------


def test_in_takes_commas_and_repeats_alike() -> None:
    expected = Condition("status", "in", ("pending", "done", "missed"))
    assert only_condition("tasks", "status__in=pending,done,missed") == expected
    assert only_condition("tasks", "status__in=pending&status__in=done,missed") == expected
    assert only_condition("tasks", "status__in=pending&status__in=done&status__in=missed") == expected


def test_in_keeps_the_order_given_and_drops_repeated_values() -> None:
    assert only_condition("tasks", "status__in=missed,pending,missed").value == ("missed", "pending")


def test_contains_takes_commas_and_repeats_alike() -> None:
    expected = Condition("class_tags", "contains", ("a", "b"))
    assert only_condition("goals", "class_tags__contains=a,b") == expected
    assert only_condition("goals", "class_tags__contains=a&class_tags__contains=b") == expected


def test_in_takes_at_most_100_values() -> None:
    values = [f"u{i}@x.io" for i in range(MAX_IN_VALUES)]
    assert len(only_condition("users", "email__in=" + ",".join(values)).value) == MAX_IN_VALUES
    too_many = "email__in=" + ",".join([*values, "one@more.io"])
    assert problems(lister("users"), too_many) == [("email__in", "takes at most 100 values")]


def test_the_100_value_cap_counts_every_repeat() -> None:
    first = "email__in=" + ",".join(f"a{i}@x.io" for i in range(60))
    second = "email__in=" + ",".join(f"b{i}@x.io" for i in range(41))
    assert problems(lister("users"), f"{first}&{second}") == [("email__in", "takes at most 100 values")]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("email__in=", ("",)),
        ("email__in=a@x.io,", ("a@x.io", "")),
        ("email__in=,a@x.io", ("", "a@x.io")),
        ("email__in=a@x.io&email__in=", ("a@x.io", "")),
    ],
)
def test_an_empty_piece_is_the_empty_string(text: str, values: tuple[str, ...]) -> None:
    assert only_condition("users", text) == Condition("email", "in", values)


@pytest.mark.parametrize("text", ["status__in=", "status__in=pending,", "status__in=pending,,missed"])
def test_an_empty_piece_is_not_an_enum_value(text: str) -> None:
    assert problems(lister("tasks"), text) == [("status__in", f"'' is not one of {TASK_STATUSES}")]


def test_an_empty_contains_piece_is_the_empty_string() -> None:
    assert only_condition("goals", "class_tags__contains=").value == ("",)


# --- repeated and unknown parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "text", "name"),
    [
        ("tasks", "status=pending&status=done", "status"),
        ("tasks", "status__ne=done&status__ne=done", "status__ne"),
        ("tasks", "scheduled_at__gte=2026-01-01&scheduled_at__gte=2026-01-02", "scheduled_at__gte"),
        ("tasks", "goal_id__isnull=true&goal_id__isnull=true", "goal_id__isnull"),
        ("tasks", "limit=5&limit=5", "limit"),
        ("tasks", "skip=0&skip=0", "skip"),
        ("tasks", "count=false&count=false", "count"),
        ("tasks", "cursor=a&cursor=a", "cursor"),
        ("tasks", "include_limit=5&include_limit=5", "include_limit"),
        ("users", "tasks.status=pending&tasks.status=done", "tasks.status"),
    ],
)
def test_a_repeated_scalar_parameter_is_named(resource: str, text: str, name: str) -> None:
    assert (name, "given more than once") in problems(lister(resource), text)


def test_sort_fields_and_include_may_repeat() -> None:
    parsed = parse(
        lister("tasks"), "sort=title&sort=-scheduled_at&fields=title&fields=status&include=goal&include=user"
    )
    assert parsed.order == (OrderTerm("title"), OrderTerm("scheduled_at", descending=True), OrderTerm("id"))
    assert parsed.read.fields == ("id", "title", "status")
    assert [embed.name for embed in parsed.read.embeds] == ["goal", "user"]


def test_a_resource_without_to_many_embeds_gets_no_embed_filter_hint() -> None:
    [(_, message)] = problems(lister("notification_log"), "colour=red")
    assert "embed filters" not in message


def test_an_unknown_parameter_is_named_with_the_known_ones() -> None:
    [(name, message)] = problems(lister("tasks"), "colour=red")
    assert name == "colour"
    assert message.startswith("unknown query parameter; known: ")
    assert message.endswith(", and embed filters such as `notification_log.channel`")  # an embed tasks has
    known = message.removeprefix("unknown query parameter; known: ").split(", and embed")[0].split(", ")
    assert known == sorted(known)
    assert {"status__in", "scheduled_at__gte", "sort", "cursor", "fields", "include", "include_limit"} <= set(known)


def test_a_get_route_takes_no_filters_or_paging() -> None:
    found = problems(getter("tasks"), "status=pending&limit=5&sort=title")
    assert [name for name, _ in found] == ["status", "limit", "sort"]
    assert all(message.startswith("unknown query parameter") for _, message in found)


def test_an_operator_the_manifest_does_not_open_is_unknown() -> None:
    found = problems(lister("tasks"), "title=Run&status__gt=done&description__icontains=x")
    assert [name for name, _ in found] == ["title", "status__gt", "description__icontains"]


def test_a_parameter_without_a_name_is_ignored() -> None:
    assert parse(lister("tasks"), "=x") == ParsedQuery()


def test_an_empty_query_is_the_default_query() -> None:
    assert parse(lister("tasks"), "") == ParsedQuery()


# --- every problem at once, in query-string order -----------------------------------------------------------------


def test_every_problem_is_named_at_once_in_query_string_order() -> None:
    text = (
        "zzz=1&limit=0&status=nope&sort=nope&scheduled_at__gte=x&include=nope&fields=nope"
        "&include_limit=0&count=maybe&goal_id__isnull=1&skip=-1"
    )
    assert [name for name, _ in problems(lister("tasks"), text)] == [
        "zzz",
        "limit",
        "status",
        "sort",
        "scheduled_at__gte",
        "include",
        "fields",
        "include_limit",
        "count",
        "goal_id__isnull",
        "skip",
    ]


def test_problems_follow_the_query_string_not_the_parsing_order() -> None:
    # paging is checked after filters and the read plan, yet its problems come first when its parameters do
    found = problems(lister("users"), "sort=nope&limit=9999&fields=nope&tasks.status=nope&zzz=1")
    assert [name for name, _ in found] == ["sort", "limit", "fields", "tasks.status", "zzz"]


def test_a_parameter_named_twice_keeps_its_first_position() -> None:
    found = problems(lister("tasks"), "limit=0&status=nope&limit=0")
    assert [name for name, _ in found] == ["limit", "limit", "status"]
    assert ("limit", "given more than once") in found


# --- sort ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("sort=title", (OrderTerm("title"), OrderTerm("id"))),
        ("sort=-title", (OrderTerm("title", True), OrderTerm("id", True))),
        (
            "sort=-scheduled_at,title",
            (OrderTerm("scheduled_at", True), OrderTerm("title"), OrderTerm("id", True)),
        ),
        (
            "sort=scheduled_at,-title",
            (OrderTerm("scheduled_at"), OrderTerm("title", True), OrderTerm("id")),
        ),
        ("sort= title , -status ", (OrderTerm("title"), OrderTerm("status", True), OrderTerm("id"))),
        ("sort=id", (OrderTerm("id"),)),
        ("sort=-id", (OrderTerm("id", True),)),
        ("sort=title,-id", (OrderTerm("title"), OrderTerm("id", True))),
        ("sort=-created_at", (OrderTerm("created_at", True), OrderTerm("id", True))),
        ("sort=duration_minutes", (OrderTerm("duration_minutes"), OrderTerm("id"))),
        ("sort=", ()),
        ("sort=,", ()),
    ],
)
def test_sort_terms_end_with_id_in_the_first_terms_direction(text: str, order: tuple[OrderTerm, ...]) -> None:
    assert parse(lister("tasks"), text).order == order


def test_sorting_by_id_first_orders_by_id() -> None:
    order = parse(lister("tasks"), "sort=-id,title").order
    assert order[0] == OrderTerm("id", descending=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sort=nope", "cannot sort by 'nope'"),
        ("sort=-nope", "cannot sort by 'nope'"),
        ("sort=shared_with_goal_ids", "cannot sort by 'shared_with_goal_ids'"),
        ("sort=--title", "cannot sort by '-title'"),
        ("sort=-", "cannot sort by ''"),
        ("sort=title,-title", "names 'title' twice"),
    ],
)
def test_a_bad_sort_is_named_sort(text: str, message: str) -> None:
    [(name, found)] = problems(lister("tasks"), text)
    assert name == "sort"
    assert found.startswith(message)


@pytest.mark.parametrize("text", ["sort=title,title", "sort=title&sort=title"])
def test_a_sort_naming_a_field_twice_the_same_way_is_named_sort(text: str) -> None:
    assert problems(lister("tasks"), text) == [("sort", "names 'title' twice")]


def test_an_unsortable_field_is_refused_and_the_sortable_ones_listed() -> None:
    [(_, message)] = problems(lister("goals"), "sort=plan_json")
    sortable = message.split("sortable: ")[1].split(", ")
    assert "plan_json" not in sortable
    assert "class_tags" not in sortable
    assert {"id", "title", "status", "pipeline_order", "created_at"} <= set(sortable)


def test_every_bad_sort_term_is_named() -> None:
    found = problems(lister("tasks"), "sort=nope,title,plan,-title")
    assert [name for name, _ in found] == ["sort", "sort", "sort"]


def test_without_sort_the_plan_takes_the_resources_default_order() -> None:
    tasks = ListRequest(lister("tasks"), SEAL)
    plan = tasks.plan(parse(tasks.parser, ""))
    assert plan.order == (OrderTerm("created_at", True), OrderTerm("id", True))
    log = ListRequest(lister("notification_log"), SEAL)
    plan = log.plan(parse(log.parser, "sort="))
    assert plan.order == (OrderTerm("sent_at", True), OrderTerm("id", True))


# --- paging -------------------------------------------------------------------------------------------------------


def test_paging_values_are_read() -> None:
    parsed = parse(lister("tasks"), "skip=40&limit=20&count=false")
    assert (parsed.offset, parsed.limit, parsed.count) == (40, 20, False)
    assert (ParsedQuery().offset, ParsedQuery().limit, ParsedQuery().count) == (0, None, True)  # not sent
    plan = ListRequest(lister("tasks"), SEAL).plan(ParsedQuery())
    assert (plan.offset, plan.limit, plan.count) == (0, 100, True)  # a page of the default size


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("limit=0", "limit", "must be between 1 and 500"),
        ("limit=501", "limit", "must be between 1 and 500"),
        ("limit=ten", "limit", "is not an integer"),
        ("skip=-1", "skip", "must be between 0 and 2147483647"),
        ("skip=2147483648", "skip", "must be between 0 and 2147483647"),
        ("count=0", "count", "is not `true` or `false`"),
        ("count=False", "count", "is not `true` or `false`"),
    ],
)
def test_bad_paging_values_are_named(text: str, name: str, message: str) -> None:
    assert problems(lister("tasks"), text) == [(name, message)]


@pytest.mark.parametrize("text", ["limit=1", "limit=500", "skip=0", "skip=2147483647"])
def test_paging_bounds_are_inclusive(text: str) -> None:
    parse(lister("tasks"), text)


def test_cursor_with_skip_is_named_cursor() -> None:
    assert problems(lister("tasks"), "cursor=abc&skip=0") == [
        ("cursor", "cannot be combined with skip: a cursor already says where to start")
    ]


def test_a_cursor_alone_is_kept_for_the_plan() -> None:
    assert parse(lister("tasks"), "cursor=abc").cursor == "abc"


# --- fields -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("fields=title,status", ("id", "title", "status")),
        ("fields=status,id,title", ("id", "status", "title")),
        ("fields=id", ("id",)),
        ("fields=title,title", ("id", "title")),
        ("fields= title , created_at ", ("id", "title", "created_at")),
        ("fields=", None),
    ],
)
def test_fields_always_start_with_id(text: str, fields: tuple[str, ...] | None) -> None:
    assert parse(lister("tasks"), text).read.fields == fields


def test_fields_work_on_every_read_route() -> None:
    assert parse(getter("tasks"), "fields=title").read.fields == ("id", "title")
    assert parse(time_ranger(), "fields=title").read.fields == ("id", "title")


@pytest.mark.parametrize("text", ["fields=nope", "fields=title,nope", "fields=goal", "fields=title__icontains"])
def test_an_unknown_field_is_named_fields(text: str) -> None:
    [(name, message)] = problems(lister("tasks"), text)
    assert name == "fields"
    assert message.startswith("unknown field(s) ")
    assert "known: id, user_id, goal_id, title" in message


# --- include ------------------------------------------------------------------------------------------------------


def test_to_one_embeds_are_the_reference_without_id() -> None:
    read = parse(getter("tasks"), "include=goal,user").read
    assert read == ReadPlan(None, (EmbedPlan("goal"), EmbedPlan("user")))


def test_to_many_embeds_are_the_child_resources() -> None:
    read = parse(getter("users"), "include=goals,tasks,conversations,patterns").read
    assert [embed.name for embed in read.embeds] == ["conversations", "goals", "patterns", "tasks"]
    assert all(embed.limit == DEFAULT_INCLUDE_LIMIT for embed in read.embeds)


def test_include_names_each_embed_once() -> None:
    assert parse(getter("users"), "include=goals,goals&include=goals").read.embeds == (EmbedPlan("goals"),)


def test_include_empty_is_no_include() -> None:
    assert parse(getter("users"), "include=").read == ReadPlan()


def test_a_nested_include_embeds_each_level() -> None:
    read = parse(getter("users"), "include=goals.tasks.notification_log").read
    assert read.embeds == (EmbedPlan("goals", embeds=(EmbedPlan("tasks", embeds=(EmbedPlan("notification_log"),)),)),)


@pytest.mark.parametrize(
    ("resource", "text"),
    [
        ("users", "include=goals.tasks"),
        ("users", "include=goals.tasks.notification_log"),
        ("users", "include=tasks.goal.user"),
        ("tasks", "include=goal.user"),
        ("notification_log", "include=task.goal.goals"),
    ],
)
def test_includes_up_to_three_levels_are_accepted(resource: str, text: str) -> None:
    assert parse(getter(resource), text).read.embeds


@pytest.mark.parametrize(
    ("resource", "text", "message"),
    [
        (
            "users",
            "include=goals.tasks.notification_log.task",
            "goals.tasks.notification_log.task: nests deeper than 3",
        ),
        (
            "users",
            "include=nope",
            "nope: `nope` is not an embed of users (known: goals, tasks, conversations, patterns)",
        ),
        ("users", "include=goals.nope", "goals.nope: `nope` is not an embed of goals (known: user, parent_goal, goals"),
        ("tasks", "include=goal_id", "goal_id: `goal_id` is not an embed of tasks"),
        ("tasks", "include=goals", "goals: `goals` is not an embed of tasks"),
        ("conversations", "include=user.nope", "user.nope: `nope` is not an embed of users"),
        ("notification_log", "include=task.", "task.: `` is not an embed of tasks"),
    ],
)
def test_a_bad_include_is_named_include(resource: str, text: str, message: str) -> None:
    [(name, found)] = problems(getter(resource), text)
    assert name == "include"
    assert found.startswith(message)


def test_every_bad_include_is_named() -> None:
    found = problems(getter("users"), "include=nope,goals,zip")
    assert [(name, message.split(":")[0]) for name, message in found] == [("include", "nope"), ("include", "zip")]


@pytest.mark.parametrize(("raw", "limit"), [("1", 1), ("100", 100), ("37", 37)])
def test_include_limit_bounds_each_to_many_embed(raw: str, limit: int) -> None:
    read = parse(getter("users"), f"include=goals,tasks&include_limit={raw}").read
    assert [embed.limit for embed in read.embeds] == [limit, limit]


@pytest.mark.parametrize(
    ("raw", "message"),
    [("0", "must be between 1 and 100"), ("101", "must be between 1 and 100"), ("x", "is not an integer")],
)
def test_a_bad_include_limit_is_named(raw: str, message: str) -> None:
    assert problems(getter("users"), f"include=goals&include_limit={raw}") == [("include_limit", message)]


# --- embed filters ------------------------------------------------------------------------------------------------


def test_an_embed_filter_filters_its_embed() -> None:
    read = parse(lister("users"), "include=goals,tasks&tasks.status__in=pending,missed").read
    assert read.embeds == (
        EmbedPlan("goals"),
        EmbedPlan("tasks", conditions=(Condition("status", "in", ("pending", "missed")),)),
    )


def test_an_embed_filter_alone_implies_its_include() -> None:
    expected = ReadPlan(None, (EmbedPlan("tasks", conditions=(Condition("status", "eq", "pending"),)),))
    assert parse(getter("users"), "tasks.status=pending").read == expected
    assert parse(lister("users"), "tasks.status=pending").read == expected


def test_embed_filters_convert_values_like_the_childs_own() -> None:
    read = parse(getter("users"), f"tasks.scheduled_at__gte=2026-01-01T01:00:00%2B01:00&tasks.goal_id={U1}").read
    [tasks] = read.embeds
    assert tasks.conditions == (Condition("scheduled_at", "gte", utc(2026, 1, 1)), Condition("goal_id", "eq", U1))
    assert tasks.conditions[0].value.tzinfo is UTC


def test_embed_filters_do_not_filter_the_parent() -> None:
    assert parse(lister("users"), "tasks.status=pending&email=a@x.io").conditions == (
        Condition("email", "eq", "a@x.io"),
    )


def test_a_nested_embed_filter_filters_the_nested_embed() -> None:
    read = parse(getter("users"), "goals.tasks.status=pending").read
    assert read.embeds == (EmbedPlan("goals", embeds=(EmbedPlan("tasks", (Condition("status", "eq", "pending"),)),)),)


@pytest.mark.parametrize(
    ("resource", "text", "name", "message"),
    [
        ("tasks", "goal.status=active", "goal.status", "`goal` embeds one row; only to-many embeds take filters"),
        ("goals", "user.email=a@x.io", "user.email", "`user` embeds one row; only to-many embeds take filters"),
        ("users", "goals.nope=1", "goals.nope", "`nope` is not a filter of goals (known: "),
        ("users", "goals.description=x", "goals.description", "`description` is not a filter of goals"),
        ("users", "nope.status=x", "nope.status", "`nope` is not an embed of users"),
        ("users", "tasks.status=nope", "tasks.status", f"is not one of {TASK_STATUSES}"),
        ("users", "tasks.status__in=pending,", "tasks.status__in", f"'' is not one of {TASK_STATUSES}"),
        ("users", "a.b.c.d.status=x", "a.b.c.d.status", "nests deeper than 3 levels"),
    ],
)
def test_a_bad_embed_filter_is_named_by_its_full_name(resource: str, text: str, name: str, message: str) -> None:
    [(found_name, found)] = problems(lister(resource), text)
    assert found_name == name
    assert message in found, found


def test_embed_filters_are_checked_on_get_routes_too() -> None:
    assert problems(getter("tasks"), "goal.status=active")[0][0] == "goal.status"


# --- the time-range route -----------------------------------------------------------------------------------------


def test_the_time_range_route_leaves_its_own_parameters_to_its_handler() -> None:
    text = f"user_id={U1}&start_at=2026-01-01&end_at=2026-02-01&status__in=pending&fields=title&include=goal"
    parsed = parse(time_ranger(), text)
    assert parsed.conditions == (Condition("status", "in", ("pending",)),)  # user_id is the scope, not a filter
    assert parsed.read == ReadPlan(("id", "title"), (EmbedPlan("goal"),))


def test_the_time_range_route_takes_no_paging() -> None:
    assert [name for name, _ in problems(time_ranger(), "sort=title&cursor=x&limit=1")] == ["sort", "cursor", "limit"]


# --- ListRequest: plans and cursors -------------------------------------------------------------------------------


def plan_and_cursor(text: str, last: dict[str, Any]) -> str:
    lists = ListRequest(lister("tasks"), SEAL)
    plan = lists.plan(parse(lists.parser, text))
    return lists.next_cursor(plan, SimpleNamespace(**last))


LAST = {"id": U2, "created_at": utc(2026, 1, 2, 3), "scheduled_at": None, "title": "Run"}


def test_a_cursor_gives_the_next_plan_its_position() -> None:
    text = "status__in=pending,missed&sort=scheduled_at,-title"
    cursor = plan_and_cursor(text, LAST)
    lists = ListRequest(lister("tasks"), SEAL)
    plan = lists.plan(parse(lists.parser, f"{text}&cursor={cursor}&limit=7"))  # limit may change
    assert plan.after == (None, "Run", U2)
    assert plan.limit == 7
    assert plan.conditions == (Condition("status", "in", ("pending", "missed")),)


def test_a_cursor_of_the_default_order_holds_its_values() -> None:
    cursor = plan_and_cursor("", LAST)
    lists = ListRequest(lister("tasks"), SEAL)
    plan = lists.plan(parse(lists.parser, f"cursor={cursor}"))
    assert plan.after == (utc(2026, 1, 2, 3), U2)


@pytest.mark.parametrize(
    "other",
    [
        "status__in=pending",
        "status__in=pending,missed&goal_id__isnull=true",
        "status__in=pending,missed&sort=scheduled_at,title",
        "status__in=pending,missed&sort=-scheduled_at,-title",
        "status__ne=pending",
    ],
)
def test_a_cursor_of_other_filters_or_sort_is_an_invalid_cursor(other: str) -> None:
    cursor = plan_and_cursor("status__in=pending,missed&sort=scheduled_at,-title", LAST)
    lists = ListRequest(lister("tasks"), SEAL)
    with pytest.raises(InvalidCursorError) as info:
        lists.plan(parse(lists.parser, f"{other}&cursor={cursor}"))
    assert [e.field for e in info.value.errors] == ["cursor"]


def test_a_garbage_cursor_is_an_invalid_cursor() -> None:
    lists = ListRequest(lister("tasks"), SEAL)
    with pytest.raises(InvalidCursorError) as info:
        lists.plan(parse(lists.parser, "cursor=garbage"))
    [error] = info.value.errors
    assert error.field == "cursor"
    assert error.message.startswith("is not a cursor this service made")


def test_fields_and_include_do_not_bind_a_cursor() -> None:
    cursor = plan_and_cursor("status=pending", LAST)
    lists = ListRequest(lister("tasks"), SEAL)
    plan = lists.plan(parse(lists.parser, f"status=pending&fields=title&include=goal&count=false&cursor={cursor}"))
    assert plan.after is not None


def test_a_cursor_survives_the_same_filters_in_another_order() -> None:
    cursor = plan_and_cursor(f"status=pending&user_id={U1}", LAST)
    lists = ListRequest(lister("tasks"), SEAL)
    plan = lists.plan(parse(lists.parser, f"user_id={U1}&status=pending&cursor={cursor}"))
    assert plan.after is not None


# --- OpenAPI parameters -------------------------------------------------------------------------------------------


def documented(parser: QueryParser) -> dict[str, Parameter]:
    found = parameters(parser)
    names = [parameter.name for parameter in found]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return {parameter.name: parameter for parameter in found}


def enum_ref(resource: str, field: str) -> Reference:
    return Reference(ref=f"#/components/schemas/{enum_name(QUERIES[resource].entity, field)}")


def test_the_list_route_documents_every_filter_once_and_its_paging() -> None:
    docs = documented(lister("tasks"))
    tasks_filters = set(QUERIES["tasks"].filters)
    log_filters = {f"notification_log.{name}" for name in QUERIES["notification_log"].filters}
    log_filters.discard("notification_log.task_id")  # every embedded row already matches its own reference
    paging = {"sort", "skip", "limit", "count", "cursor", "fields", "include", "include_limit"}
    assert set(docs) == tasks_filters | log_filters | paging
    assert all(parameter.param_in == "query" and not parameter.required for parameter in docs.values())


@pytest.mark.parametrize(
    ("resource", "name", "schema"),
    [
        ("tasks", "status", enum_ref("tasks", "status")),
        ("tasks", "status__ne", enum_ref("tasks", "status")),
        ("tasks", "user_id", Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID)),
        ("tasks", "scheduled_at__gte", Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME)),
        ("tasks", "created_at__lt", Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME)),
        ("tasks", "goal_id__isnull", Schema(type=OpenAPIType.BOOLEAN)),
        ("tasks", "duration_minutes__gt", Schema(type=OpenAPIType.INTEGER, minimum=INT32_MIN, maximum=INT32_MAX)),
        ("tasks", "title__icontains", Schema(type=OpenAPIType.STRING)),
        ("tasks", "title__startswith", Schema(type=OpenAPIType.STRING)),
        ("patterns", "confidence__gte", Schema(type=OpenAPIType.NUMBER)),
    ],
)
def test_each_filter_is_documented_with_its_type(resource: str, name: str, schema: Schema | Reference) -> None:
    parameter = documented(lister(resource))[name]
    assert parameter.schema == schema
    assert parameter.explode is None
    assert parameter.description


@pytest.mark.parametrize(
    ("resource", "name", "items"),
    [
        ("tasks", "status__in", enum_ref("tasks", "status")),
        ("tasks", "goal_id__in", Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID)),
        ("tasks", "shared_with_goal_ids__contains", Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID)),
        ("goals", "class_tags__contains", Schema(type=OpenAPIType.STRING)),
        ("users", "email__in", Schema(type=OpenAPIType.STRING)),
    ],
)
def test_list_filters_are_documented_as_exploded_arrays(resource: str, name: str, items: Schema | Reference) -> None:
    parameter = documented(lister(resource))[name]
    assert parameter.schema == Schema(type=OpenAPIType.ARRAY, items=items, max_items=MAX_IN_VALUES)
    assert parameter.explode is True


def test_embed_filters_are_documented_with_their_prefix() -> None:
    docs = documented(lister("users"))
    for child in ("goals", "tasks", "conversations", "patterns"):
        for name in QUERIES[child].filters:
            assert (f"{child}.{name}" in docs) is (name != "user_id")  # the embed's own reference is left out
    assert docs["tasks.status__in"].schema == Schema(
        type=OpenAPIType.ARRAY, items=enum_ref("tasks", "status"), max_items=MAX_IN_VALUES
    )
    assert "of the embedded tasks" in (docs["tasks.status"].description or "")


def test_to_one_embeds_document_no_filters() -> None:
    docs = documented(lister("tasks"))
    assert not [name for name in docs if name.startswith(("goal.", "user."))]


def test_the_time_range_route_documents_no_parameter_twice() -> None:
    parser = time_ranger()
    docs = documented(parser)
    assert not set(parser.own) & set(docs)  # user_id, start_at, end_at: the handler documents them
    assert "status__in" in docs
    assert "scheduled_at__gte" in docs
    assert "notification_log.channel" in docs
    assert not {"sort", "skip", "limit", "count", "cursor"} & set(docs)
    assert {"fields", "include", "include_limit"} <= set(docs)


def test_the_get_route_documents_its_read_parameters() -> None:
    assert {"fields", "include", "include_limit"} <= set(documented(getter("tasks")))
    assert "status" not in documented(getter("tasks"))


def test_the_get_route_documents_the_embed_filters_it_takes() -> None:
    parse(getter("users"), "tasks.status=pending")
    assert "tasks.status" in documented(getter("users"))


@pytest.mark.parametrize("resource", sorted(QUERIES))
def test_every_documented_parameter_is_one_the_parser_knows(resource: str) -> None:
    parser = lister(resource)
    for name in documented(parser):
        # a value no typed parameter takes: what matters is that the parser knows the name
        messages = [message for _, message in answer(parser, urlencode({name: "\x00"}))]
        assert not [message for message in messages if message.startswith("unknown query parameter")], name


def answer(parser: QueryParser, text: str) -> list[tuple[str, str]]:
    """The problems the parser names, or none."""
    try:
        parser.parse(query(text))
    except InvalidInputError as exc:
        return [(error.field, error.message) for error in exc.errors]
    return []


# --- a list declared `shape: array` with `require` ------------------------------------------------------------------


def array_lister() -> QueryParser:
    """``GET /tasks`` as if declared ``list: {shape: array, require: [user_id]}``."""
    return QueryParser(QUERIES["tasks"], listing=True, filtering=True, paged=False, required=("user_id",))


def test_an_array_list_requires_its_scope_and_answers_every_row() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse(array_lister(), "")
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("user_id", "is required: this list answers one user_id at a time")
    ]
    parsed = parse(array_lister(), f"user_id={U1}&status=done")
    assert ListRequest(array_lister(), SEAL).plan(parsed).limit == EVERY_ROW
    assert ListRequest(array_lister(), SEAL).plan(parse(array_lister(), f"user_id={U1}&limit=3")).limit == 3


@pytest.mark.parametrize("extra", ["cursor=abc", "count=false"])
def test_an_array_list_takes_no_paging_of_pages(extra: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse(array_lister(), f"user_id={U1}&{extra}")
    assert [e.field for e in info.value.errors] == [extra.split("=", maxsplit=1)[0]]
