"""A Python client generated from ``flux-dao openapi`` with openapi-python-client works, typed, against a live server.

This is what a Flux developer does to call flux-dao from an agent: generate a client from the document, then use
its typed models, enums and functions. The test generates the client (the generator must print no warning: each one
is a part of the document it could not turn into typed code), imports it from the temporary folder and runs a short
scenario against a real ``flux-dao serve`` on SQLite: the probes (their own ``operations`` module); a user, a JSON
profile passed from one user's read into another's update (one ``JsonObject`` model, no per-field helper models); a
goal, tasks; tasks by time range; task statistics; a bulk status update; a 404 and a 422 that come back as the
generated ``Problem`` model, fields and all.

Budget: about 15 s (the generator with its ruff pass ~5 s, one server start, a dozen requests).
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
