"""A Python client generated from ``flux-dao openapi`` with openapi-python-client works, typed, against a live server.

This is what a Flux developer does to call flux-dao from an agent: generate a client from the document, then use
its typed models, enums and functions. The test generates the client (the generator must print no warning: each one
is a part of the document it could not turn into typed code), imports it from the temporary folder and runs a short
scenario against a real ``flux-dao serve`` on SQLite: the probes (their own ``operations`` module); a user, a JSON
profile passed from one user's read into another's update (one ``JsonObject`` model, no per-field helper models); a
goal, tasks; tasks by time range; task statistics; a bulk status update; a conditional update (``if_match``) and
its stale repeat refused 412 with the current version; a goal and its task in one batch, then read back from the
change feed; a 404 and a 422 that come
back as the generated ``Problem`` model, fields and all. A second scenario asks the query language through the generated
functions: ``status__in`` with the generated enum, a ``scheduled_at`` window, ``sort``, ``limit``, the walk along
``next_cursor`` to the last page, ``include`` read as typed attributes (``task.goal.title``), and an embed filter.

Budget: about 15 s (the generator with its ruff pass ~5 s, one server start, a few dozen requests).
"""

import datetime as dt
import importlib
import inspect
import json
import re
import subprocess
import sys
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import API_KEY, KEY_HEADER
from tests.live import FLUX_DAO, MANIFEST, sqlite_live_server

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "flux_dao_client"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Generate the client into a temporary folder; yields the package name, importable for the module's tests."""
    work = tmp_path_factory.mktemp("generated-client")
    document = subprocess.run(
        [str(FLUX_DAO), "--manifest", str(MANIFEST), "openapi"], capture_output=True, text=True, check=True
    ).stdout
    (work / "openapi.json").write_text(document)
    generated = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(work / "openapi.json"),
            "--output-path",
            str(work / PACKAGE),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert re.search(r"warning|error", output, re.IGNORECASE) is None, output
    sys.path.insert(0, str(work))
    try:
        yield PACKAGE
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def load(package: str, *modules: str) -> list[ModuleType]:
    return [importlib.import_module(f"{package}.{module}") for module in modules]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sqlite_live_server(tmp_path_factory, "generated-client-server", env={"SERVICE_API_KEYS": API_KEY}) as server:
        yield server.base


def test_generated_client_runs_a_planner_scenario(client_package: str, base_url: str) -> None:
    flux, models, types = load(client_package, "client", "models", "types")
    users, goals, tasks = load(client_package, "api.users", "api.goals", "api.tasks")
    create_user, get_user, update_user = load(
        client_package, "api.users.create_user", "api.users.get_user", "api.users.update_user"
    )
    health, ready = load(client_package, "api.operations.health", "api.operations.ready")
    (create_goal,) = load(client_package, "api.goals.create_goal")
    get_task, run_batch = load(client_package, "api.tasks.get_task", "api.batch.batch")
    (read_changes,) = load(client_package, "api.changes.read_changes")
    create_task, list_tasks, by_timerange, statistics, bulk_update, update_task = load(
        client_package,
        "api.tasks.create_task",
        "api.tasks.list_tasks",
        "api.tasks.tasks_by_timerange",
        "api.tasks.task_statistics",
        "api.tasks.bulk_update_task_status",
        "api.tasks.update_task",
    )
    del users, goals, tasks

    # the service key goes in the header the document's security scheme names
    client = flux.AuthenticatedClient(base_url=base_url, token=API_KEY, prefix="", auth_header_name=KEY_HEADER)
    client = client.with_headers({"X-Request-ID": "planner-run-1"})

    with client as client:
        # the probes sit in their own module, named after their tag
        assert health.sync(client=client).status == "ok"
        assert ready.sync(client=client).status == "ready"

        ada = create_user.sync(client=client, body=models.UserCreate(email="ada@example.com"))
        assert isinstance(ada, models.User), ada
        assert isinstance(ada.id, uuid.UUID)
        assert ada.onboarded is False
        assert ada.profile is None
        assert isinstance(ada.created_at, dt.datetime)
        assert ada.created_at.tzinfo is not None

        # a free-form JSON field has one type everywhere: what one user's read gives, another's create takes
        profile = models.JsonObject.from_dict({"timezone": "Europe/Paris", "lead_minutes": [10, 30]})
        grace = create_user.sync(client=client, body=models.UserCreate(email="grace@example.com", profile=profile))
        assert isinstance(grace, models.User), grace
        assert isinstance(grace.profile, models.JsonObject)
        assert grace.profile["timezone"] == "Europe/Paris"
        assert grace.profile.to_dict() == {"timezone": "Europe/Paris", "lead_minutes": [10, 30]}
        copied = update_user.sync(ada.id, client=client, body=models.UserUpdate(profile=grace.profile))
        assert isinstance(copied, models.User), copied
        assert copied.profile is not None
        assert copied.profile.to_dict() == grace.profile.to_dict()

        goal = create_goal.sync(client=client, body=models.GoalCreate(user_id=ada.id, title="Run a marathon"))
        assert isinstance(goal, models.Goal), goal
        assert goal.status is models.GoalStatus.ACTIVE

        day = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        plan = [("Warm up", 7), ("Long run", 8), ("Stretch", 9), ("Next week", 24 * 7 + 7)]
        created = []
        for title, hour in plan:
            task = create_task.sync(
                client=client,
                body=models.TaskCreate(
                    user_id=ada.id, goal_id=goal.id, title=title, scheduled_at=day + dt.timedelta(hours=hour)
                ),
            )
            assert isinstance(task, models.Task), task
            assert task.status is models.TaskStatus.PENDING
            assert task.trigger_type is models.TaskTriggerType.TIME
            assert task.scheduled_at == day + dt.timedelta(hours=hour)
            created.append(task)

        # the first day's tasks, ascending
        first_day = by_timerange.sync(
            client=client, user_id=ada.id, start_at=day, end_at=day + dt.timedelta(hours=23, minutes=59)
        )
        assert isinstance(first_day, list), first_day
        assert [t.title for t in first_day] == ["Warm up", "Long run", "Stretch"]
        assert all(isinstance(t, models.Task) for t in first_day)

        # two done, one missed, in one statement
        done = bulk_update.sync(
            client=client,
            body=models.TaskBulkUpdateState(task_ids=[created[0].id, created[1].id], new_status=models.TaskStatus.DONE),
        )
        assert isinstance(done, models.TaskBulkUpdateStateResult), done
        assert done.updated_count == 2
        missed = update_task.sync(created[2].id, client=client, body=models.TaskUpdate(status=models.TaskStatus.MISSED))
        assert isinstance(missed, models.Task), missed
        assert missed.status is models.TaskStatus.MISSED
        assert missed.title == "Stretch"  # a partial update: what was not sent is unchanged

        # a filtered page, with the enum as the filter
        pending = list_tasks.sync(client=client, user_id=ada.id, status=models.TaskStatus.PENDING)
        assert isinstance(pending, models.TaskPage), pending
        assert [t.title for t in pending.items] == ["Next week"]
        assert (pending.total, pending.has_next) == (1, False)

        stats = statistics.sync(
            client=client,
            user_id=ada.id,
            start_date=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
            end_date=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        )
        assert isinstance(stats, models.TaskStatistics), stats
        assert stats.user_id == ada.id
        assert stats.total_tasks == 4
        assert stats.completion_rate == pytest.approx(0.5)
        assert stats.by_status[models.TaskStatus.DONE] == 2  # a map keyed by status (the statuses that occur)
        assert stats.by_status.to_dict() == {"done": 2, "missed": 1, "pending": 1}

        # a conditional update: made at the version read, or refused with the version the row is at now
        later = get_task.sync(created[3].id, client=client)
        assert isinstance(later, models.Task), later
        tag = f'"{later.version}"'
        moved = update_task.sync(
            created[3].id, client=client, body=models.TaskUpdate(title="Next week, early"), if_match=tag
        )
        assert isinstance(moved, models.Task), moved
        assert moved.version == later.version + 1
        stale = update_task.sync_detailed(
            created[3].id, client=client, body=models.TaskUpdate(title="Lost"), if_match=tag
        )
        assert stale.status_code == 412
        assert isinstance(stale.parsed, models.Problem), stale.parsed
        assert stale.parsed.type_ == "urn:flux-dao:problem:precondition-failed"
        assert stale.parsed.version == moved.version

        # a goal and its first task in one transaction, the task pointing at the goal made just before
        operations = [
            models.BatchOperation(
                op=models.BatchOperationOp.CREATE,
                resource="goals",
                ref="swim",
                body=models.JsonObject.from_dict({"user_id": str(ada.id), "title": "Swim a mile"}),
            ),
            models.BatchOperation(
                op=models.BatchOperationOp.CREATE,
                resource="tasks",
                body=models.JsonObject.from_dict({"user_id": str(ada.id), "goal_id": "$swim.id", "title": "Pool"}),
            ),
        ]
        planned = run_batch.sync(client=client, body=models.BatchRequest(operations=operations))
        assert isinstance(planned, models.BatchResponse), planned
        assert [result.status for result in planned.results] == [201, 201]
        goal_row, task_row = (result.row for result in planned.results)
        assert isinstance(goal_row, models.JsonObject)
        assert isinstance(task_row, models.JsonObject)
        assert task_row["goal_id"] == goal_row["id"]

        # the observer follows the feed: the batch's goal and task are its newest goal and task changes
        feed = read_changes.sync(client=client, resources="goals,tasks", limit=1000)
        assert isinstance(feed, models.ChangesPage), feed
        assert all(isinstance(change.op, models.ChangeOp) for change in feed.items)
        assert all(isinstance(change.committed_at, dt.datetime) for change in feed.items)
        newest = feed.items[-2:]
        assert [(c.resource, c.op, c.id) for c in newest] == [
            ("goals", models.ChangeOp.INSERT, goal_row["id"]),
            ("tasks", models.ChangeOp.INSERT, task_row["id"]),
        ]
        assert newest[1].row["goal_id"] == goal_row["id"]
        assert [c.position for c in feed.items] == sorted({c.position for c in feed.items})
        caught_up = read_changes.sync(client=client, after=str(feed.next_), resources="goals,tasks")
        assert isinstance(caught_up, models.ChangesPage)
        assert (caught_up.items, caught_up.next_) == ([], feed.next_)

        # errors come back typed: the generated Problem model, its fields readable
        nobody = uuid.uuid4()
        response = get_user.sync_detailed(nobody, client=client)
        assert response.status_code == 404
        missing = response.parsed
        assert isinstance(missing, models.Problem), missing
        assert missing.type_ == "urn:flux-dao:problem:not-found"
        assert missing.status == 404
        assert missing.resource == "users"
        assert missing.id == str(nobody)
        assert str(nobody) in missing.detail

        invalid = create_task.sync_detailed(
            client=client, body=models.TaskCreate(user_id=ada.id, title="", duration_minutes=-5)
        )
        assert invalid.status_code == 422
        problem = invalid.parsed
        assert isinstance(problem, models.Problem), problem
        assert problem.type_ == "urn:flux-dao:problem:validation-error"
        assert isinstance(problem.errors, list)
        assert all(isinstance(e, models.ProblemField) for e in problem.errors)
        assert {e.field for e in problem.errors} >= {"title"}
        assert isinstance(problem.request_id, str)

    assert not isinstance(types.UNSET, models.Problem)  # keeps `types` used: it is part of the client's surface


def test_generated_client_is_typed_end_to_end(client_package: str) -> None:
    """No model is named after a path, no operation answers an untyped ``dict``/``Any`` body (but a 204's ``Any``),
    no optional query parameter takes None (the generated code would drop it, silently turning a filter off; the
    service refuses ``?goal_id=null``), and the problem's optional members are absent, never None."""
    (models,) = load(client_package, "models")
    names = [name for name in dir(models) if not name.startswith("_")]
    assert not [n for n in names if n.startswith(("Api", "Get", "Post", "Patch", "Delete"))], names
    generated = Path(str(models.__file__)).parent.parent
    untyped: dict[str, Any] = {}
    nullable_parameters: dict[str, list[str]] = {}
    for path in sorted((generated / "api").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        module = importlib.import_module(f"{client_package}.api.{path.parent.name}.{path.stem}")
        signature = inspect.signature(module.sync)
        returned = str(signature.return_annotation)
        if "dict[str, Any]" in returned or (re.search(r"\bAny\b", returned) and not path.stem.startswith("delete_")):
            untyped[path.stem] = returned
        nullable = [
            name
            for name, parameter in signature.parameters.items()
            if parameter.default is not inspect.Parameter.empty and type(None) in typing.get_args(parameter.annotation)
        ]
        if nullable:
            nullable_parameters[path.stem] = nullable
    assert not untyped, json.dumps(untyped, indent=2)
    assert not nullable_parameters, nullable_parameters
    assert "list_tasks" in {p.stem for p in (generated / "api").rglob("*.py")}  # the loop above did look at them
    helpers = [n for n in names if re.search(r"Type\d+$", n)]
    assert not helpers, helpers  # no `...Type0` model per nullable field: JSON fields share `JsonObject`
    json_fields = {
        f"{model}.{field}": str(getattr(models, model).__annotations__[field])
        for model, field in [
            ("User", "profile"),
            ("UserCreate", "profile"),
            ("UserUpdate", "profile"),
            ("Goal", "plan_json"),
            ("GoalCreate", "plan_json"),
            ("Pattern", "data"),
            ("PatternUpdate", "data"),
        ]
    }
    assert all(kind.startswith("JsonObject | None") for kind in json_fields.values()), json_fields
    operations = {p.stem for p in (generated / "api" / "operations").glob("*.py")}
    assert operations == {"__init__", "health", "ready"}, operations  # the probes' tag names their module
    problem_members = {name: str(kind) for name, kind in models.Problem.__annotations__.items()}
    assert problem_members["resource"] == "str | Unset", problem_members
    assert not [name for name, kind in problem_members.items() if "None" in kind], problem_members


def connect(package: str, base_url: str) -> Any:
    """The generated client with the service key, as the planner scenario makes it."""
    (flux,) = load(package, "client")
    return flux.AuthenticatedClient(base_url=base_url, token=API_KEY, prefix="", auth_header_name=KEY_HEADER)


WINDOW_START = dt.datetime(2031, 3, 3, tzinfo=dt.UTC)
WINDOW_END = WINDOW_START + dt.timedelta(days=7)
ASKED = ("pending", "missed")


@dataclass(frozen=True)
class Planner:
    """One user's rows made through the generated client for the query scenario (``models``: the generated module)."""

    models: Any
    user: Any
    goal: Any
    tasks: list[Any]

    def expected(self) -> list[Any]:
        """The user's pending or missed tasks in the window, ``-scheduled_at,title`` then ``-id``, computed here."""
        rows = [
            t
            for t in self.tasks
            if t.user_id == self.user.id
            and t.status.value in ASKED
            and t.scheduled_at is not None
            and WINDOW_START <= t.scheduled_at < WINDOW_END
        ]
        rows.sort(key=lambda t: t.id, reverse=True)  # least significant first: stable sorts keep the earlier order
        rows.sort(key=lambda t: t.title)
        rows.sort(key=lambda t: t.scheduled_at, reverse=True)
        return rows


@pytest.fixture(scope="module")
def planner(client_package: str, base_url: str) -> Planner:
    """A user with a goal and a dozen tasks around a week's window: ties, bounds, a null, other statuses and users."""
    (models,) = load(client_package, "models")
    create_user, create_goal, create_task = load(
        client_package, "api.users.create_user", "api.goals.create_goal", "api.tasks.create_task"
    )
    pending, missed, done = models.TaskStatus.PENDING, models.TaskStatus.MISSED, models.TaskStatus.DONE
    with connect(client_package, base_url) as client:
        lin = create_user.sync(client=client, body=models.UserCreate(email="lin@example.com"))
        other = create_user.sync(client=client, body=models.UserCreate(email="noor@example.com"))
        goal = create_goal.sync(client=client, body=models.GoalCreate(user_id=lin.id, title="Learn the cello"))
        assert isinstance(lin, models.User), lin
        assert isinstance(other, models.User), other
        assert isinstance(goal, models.Goal), goal
        hour = dt.timedelta(hours=1)
        plan: list[tuple[Any, str, dt.datetime | None, Any, bool]] = [
            (lin, "Scales", WINDOW_START, pending, True),  # exactly at the `gte` bound: in
            (lin, "Bow drill", WINDOW_START + 26 * hour, missed, True),
            (lin, "Bach suite", WINDOW_START + 26 * hour, pending, True),  # same time: the title orders them
            (lin, "Etude", WINDOW_START + 50 * hour, missed, False),  # no goal: its `goal` embed is null
            (lin, "Etude", WINDOW_START + 50 * hour, pending, True),  # same time and title: `id` orders them
            (lin, "Lesson", WINDOW_START + 74 * hour, done, True),  # another status: out
            (lin, "Practice", WINDOW_START + 98 * hour, pending, True),
            (lin, "Long tones", WINDOW_START + 120 * hour, missed, True),
            (lin, "Sight reading", WINDOW_START + 144 * hour, pending, False),
            (lin, "Recital", WINDOW_END, pending, True),  # exactly at the `lt` bound: out
            (lin, "Tuning", WINDOW_START - hour, pending, True),  # before the window: out
            (lin, "Open strings", None, pending, True),  # no time: a range never matches it
            (other, "Someone else's", WINDOW_START + 30 * hour, pending, False),  # another user: out
        ]
        tasks = []
        for user, title, at, status, with_goal in plan:
            body = models.TaskCreate(user_id=user.id, title=title, scheduled_at=at, status=status)
            if with_goal:
                body.goal_id = goal.id
            task = create_task.sync(client=client, body=body)
            assert isinstance(task, models.Task), task
            tasks.append(task)
    return Planner(models, lin, goal, tasks)


def test_generated_client_filters_sorts_walks_the_cursor_and_reads_embeds(
    client_package: str, base_url: str, planner: Planner
) -> None:
    models, types = planner.models, load(client_package, "types")[0]
    list_tasks, get_task, list_users = load(
        client_package, "api.tasks.list_tasks", "api.tasks.get_task", "api.users.list_users"
    )
    expected = planner.expected()
    assert len(expected) == 8  # the scenario's own check: three pages of 3, 3 and 2
    query: dict[str, Any] = {
        "user_id": planner.user.id,
        "status_in": [models.TaskStatus.PENDING, models.TaskStatus.MISSED],  # `status__in`: a list of the enum
        "scheduled_at_gte": WINDOW_START,
        "scheduled_at_lt": WINDOW_END,
        "sort": ["-scheduled_at", "title"],
        "limit": 3,
        "include": ["goal"],
    }
    with connect(client_package, base_url) as client:
        first = list_tasks.sync(client=client, **query)
        assert isinstance(first, models.TaskPage), first
        assert (first.total, first.page, first.has_next) == (8, 1, True)
        pages = [first]
        while (cursor := pages[-1].next_cursor) is not None:
            assert len(pages) < 5, [[t.title for t in p.items] for p in pages]  # a cursor that never ends
            page = list_tasks.sync(client=client, **query, cursor=cursor)
            assert isinstance(page, models.TaskPage), page
            assert isinstance(page.next_cursor, str | None)
            pages.append(page)
        assert [len(p.items) for p in pages] == [3, 3, 2]
        assert [p.has_next for p in pages] == [True, True, False]
        assert all(p.page is None for p in pages[1:])  # cursor mode has no page number
        walked = [t for p in pages for t in p.items]
        assert [t.id for t in walked] == [t.id for t in expected], ([t.title for t in walked], expected)
        assert [t.title for t in walked][:4] == ["Sight reading", "Long tones", "Practice", "Etude"]

        # `include=goal`: a typed `Goal` on each task (null where the task has none); what was not asked stays UNSET
        for task in walked:
            assert isinstance(task, models.Task)
            if task.goal_id is None:
                assert task.goal is None, task
            else:
                assert isinstance(task.goal, models.Goal), task.goal
                assert (task.goal.id, task.goal.title) == (planner.goal.id, "Learn the cello")
            assert isinstance(task.user, types.Unset)
            assert isinstance(task.notification_log, types.Unset)

        one = get_task.sync(walked[0].id, client=client, include=["goal", "user"])
        assert isinstance(one, models.Task), one
        assert one.goal is None  # "Sight reading" has no goal
        assert isinstance(one.user, models.User)
        assert one.user.email == "lin@example.com"

        # an embed filter through its generated argument: `tasks.status__in` is `tasks_status_in`, and embeds tasks
        users = list_users.sync(client=client, email="lin@example.com", tasks_status_in=[models.TaskStatus.MISSED])
        assert isinstance(users, models.UserPage), users
        (lin,) = users.items
        assert isinstance(lin.goals, types.Unset)
        missed = [t for t in reversed(planner.tasks) if t.user_id == lin.id and t.status is models.TaskStatus.MISSED]
        assert [t.id for t in lin.tasks] == [t.id for t in missed]  # tasks' default order: newest first


def test_generated_client_pages_by_cursor_with_the_generated_defaults(
    client_package: str, base_url: str, planner: Planner
) -> None:
    models = planner.models
    (list_tasks,) = load(client_package, "api.tasks.list_tasks")
    with connect(client_package, base_url) as client:
        first = list_tasks.sync(client=client, user_id=planner.user.id, sort=["title"], limit=2)
        assert isinstance(first, models.TaskPage), first
        assert isinstance(first.next_cursor, str)
        second = list_tasks.sync_detailed(
            client=client, user_id=planner.user.id, sort=["title"], limit=2, cursor=first.next_cursor
        )
        assert second.status_code == 200, second.parsed


def test_generated_client_reads_nested_embeds(client_package: str, base_url: str, planner: Planner) -> None:
    models, types = planner.models, load(client_package, "types")[0]
    (get_user,) = load(client_package, "api.users.get_user")
    with connect(client_package, base_url) as client:
        user = get_user.sync(planner.user.id, client=client, include=["goals.tasks"])
    assert isinstance(user, models.User), user
    assert isinstance(user.tasks, types.Unset)  # only what was asked: the user's goals, and their tasks
    assert isinstance(user.goals, list), user.goals
    assert len(user.goals) == 1, user.goals
    assert isinstance(user.goals[0], models.Goal)
    assert isinstance(user.goals[0].tasks, list), user.goals[0].tasks
    newest = next(t for t in reversed(planner.tasks) if t.goal_id == planner.goal.id)
    assert user.goals[0].tasks[0].title == newest.title  # the goal's tasks in their default order, newest first


def test_generated_client_takes_embed_filters_on_a_single_read(client_package: str) -> None:
    (get_user, list_users) = load(client_package, "api.users.get_user", "api.users.list_users")
    assert "tasks_status_in" in inspect.signature(list_users.sync).parameters
    assert "tasks_status_in" in inspect.signature(get_user.sync).parameters
