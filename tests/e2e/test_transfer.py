"""``flux-dao export`` and ``flux-dao import`` (issue #14) through the command line, on both backends.

Rows are made through the HTTP API, exported from the service's database, imported into a fresh migrated one and
exported again: the checksums compare the two databases row for row. Bad rows, the conflict rules, a resumed
import and self-references given children first are each checked against what the tables then hold.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flux_dao.ops.cli import main
from flux_dao.store.migrations import upgrade
from tests import factories
from tests.conftest import MANIFEST, make_settings, run_sql
from tests.factories import API

FLUX_DAO = Path(sys.executable).parent / "flux-dao"
SUMMARY = re.compile(r"^(?P<name>\w+)\s+(?P<rows>[\d,]+) rows\s+sha256 (?P<sha>[0-9a-f]{64})", re.MULTILINE)


def cli(url: str, *args: str, stdin: bytes | None = None) -> Result:
    env = {"FLUX_DAO_DATABASE_URL": url}
    return CliRunner().invoke(main, ["--manifest", str(MANIFEST), *args], env=env, input=stdin, catch_exceptions=False)


def checksums(result: Result) -> dict[str, tuple[int, str]]:
    """The export summary: resource (and ``all``) -> (rows, sha256)."""
    assert result.exit_code == 0, result.output
    text = result.stdout if SUMMARY.search(result.stdout) else result.stderr
    return {m["name"]: (int(m["rows"].replace(",", "")), m["sha"]) for m in SUMMARY.finditer(text)}


@pytest.fixture
def target(fresh_url: str) -> str:
    """A fresh, migrated, empty database of the test's backend."""
    upgrade(make_settings(fresh_url))
    return fresh_url


def seed(client: Any) -> dict[str, Any]:
    """A bit of everything, through the API: a goal tree, tasks with versions above 1, every resource."""
    user = factories.user(client, profile={"tz": "Europe/Paris", "b": [1, 2]}, onboarded=True)
    other = factories.user(client)
    parent = factories.goal(client, user["id"], class_tags=["Health", "Fitness"], plan_json={"weeks": 6})
    child = factories.goal(client, user["id"], parent_goal_id=parent["id"], status="pipeline")
    task = factories.task(
        client,
        user["id"],
        goal_id=child["id"],
        scheduled_at="2030-01-01T04:30:00.123456Z",
        shared_with_goal_ids=[parent["id"], child["id"]],
    )
    for status in ("done", "missed"):
        response = client.patch(f"{API}/tasks/{task['id']}", json={"status": status})
        assert response.status_code == 200, response.text
    factories.task(client, other["id"], title="Stretch", duration_minutes=15)
    factories.conversation(client, user["id"], context_type="onboarding")
    factories.pattern(client, user["id"], confidence=0.42, data={"z": 1, "a": None})
    factories.notification(client, task["id"], channel="whatsapp", sent_at="2030-01-01T04:00:00Z")
    return {"user": user, "parent": parent, "child": child, "task": client.get(f"{API}/tasks/{task['id']}").json()}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def count(url: str, table: str) -> int:
    return int(run_sql(url, f"SELECT count(*) FROM {table}")[0][0])  # type: ignore[call-overload]  # noqa: S608


def test_a_database_exports_imports_and_exports_again_to_the_same_checksums(client, settings, target, tmp_path):
    rows = seed(client)
    source = settings.database.url
    before = checksums(cli(source, "export", str(tmp_path / "one")))
    assert before["tasks"][0] == 2
    assert before["all"][0] == 9
    imported = cli(target, "import", str(tmp_path / "one"))
    assert imported.exit_code == 0, imported.output
    assert "imported 9 rows" in imported.stdout
    assert "none rejected" in imported.stdout
    after = checksums(cli(target, "export", str(tmp_path / "two")))
    assert after == before
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["sha256"] == before["all"][1]
    assert manifest["resources"]["tasks"] == {"rows": 2, "sha256": before["tasks"][1]}
    # ids, timestamps and version as exported: the imported row reads exactly as the API answered
    [task] = [line for line in lines(tmp_path / "two" / "tasks.ndjson") if line["id"] == rows["task"]["id"]]
    assert task == rows["task"]
    assert task["version"] == 3
    assert task["scheduled_at"] == "2030-01-01T04:30:00.123456Z"


def test_a_folder_exported_again_imports_what_the_last_export_wrote(client, settings, target, tmp_path):
    seed(client)
    folder = tmp_path / "backup"
    assert cli(settings.database.url, "export", str(folder)).exit_code == 0
    users_only = checksums(cli(settings.database.url, "export", str(folder), "--resource", "users"))
    assert (folder / "tasks.ndjson").exists()  # left by the first export
    imported = cli(target, "import", str(folder))
    assert imported.exit_code == 0, imported.output
    assert f"imported {users_only['users'][0]} rows" in imported.stdout
    assert count(target, "tasks") == 0


def test_the_single_stream_goes_through_stdout_and_stdin(client, settings, target):
    seed(client)
    exported = cli(settings.database.url, "export", "-o", "-")
    stream = exported.stdout_bytes
    first = json.loads(stream.splitlines()[0])
    assert set(first) == {"resource", "row"}
    assert first["resource"] == "users"
    before = checksums(exported)  # the summary goes to stderr when stdout is the data
    imported = cli(target, "import", "-", stdin=stream)
    assert imported.exit_code == 0, imported.output
    assert checksums(cli(target, "export", "-o", "-")) == before


def test_bad_rows_are_reported_with_file_line_and_field_and_the_rest_go_in(client, settings, target, tmp_path):
    seed(client)
    folder = tmp_path / "export"
    cli(
        settings.database.url,
        "export",
        str(folder),
        "--resource",
        "users",
        "--resource",
        "goals",
        "--resource",
        "tasks",
    )
    [good, other] = (folder / "tasks.ndjson").read_text().splitlines()
    orphan = json.loads(good) | {"id": "01938000-0000-7000-8000-0000000000ff"}
    orphan["user_id"] = "01938000-0000-7000-8000-000000000bad"
    bad_status = json.loads(other) | {"id": "01938000-0000-7000-8000-0000000000fe", "status": "later"}
    (folder / "tasks.ndjson").write_text(
        "\n".join([good, json.dumps(bad_status), json.dumps(orphan), '{"title": ', other]) + "\n"
    )
    result = cli(target, "import", str(folder))
    assert result.exit_code == 1
    where = str(folder / "tasks.ndjson")
    assert f"{where}:2: status: Invalid enum value 'later'" in result.stderr
    assert f"{where}:3: user_id: users {orphan['user_id']} does not exist" in result.stderr
    assert f"{where}:4: row: not a JSON object" in result.stderr
    assert "tasks" in result.stdout
    assert "5 rows: 2 inserted, 0 updated, 0 skipped, 3 rejected" in result.stdout
    assert "3 rejected (reported above)" in result.stdout
    assert count(target, "tasks") == 2


def test_on_conflict_skip_update_and_fail(client, settings, target, tmp_path):
    rows = seed(client)
    folder = tmp_path / "export"
    cli(settings.database.url, "export", str(folder))
    assert cli(target, "import", str(folder)).exit_code == 0
    tasks = folder / "tasks.ndjson"
    changed = [
        json.loads(line) | ({"title": "Changed", "version": 9} if rows["task"]["id"] in line else {})
        for line in tasks.read_text().splitlines()
    ]
    tasks.write_text("".join(json.dumps(row) + "\n" for row in changed))
    where = f"SELECT title, version FROM tasks WHERE id = {sql_id(target, rows['task']['id'])}"  # noqa: S608

    skipped = cli(target, "import", str(tasks))
    assert skipped.exit_code == 0, skipped.output
    assert "2 rows: 0 inserted, 0 updated, 2 skipped, 0 rejected" in skipped.stdout
    assert run_sql(target, where) == [("Morning run", 3)]

    updated = cli(target, "import", str(tasks), "--on-conflict", "update")
    assert updated.exit_code == 0, updated.output
    assert "2 rows: 0 inserted, 2 updated, 0 skipped, 0 rejected" in updated.stdout
    assert run_sql(target, where) == [("Changed", 9)]

    failed = cli(target, "import", str(tasks), "--on-conflict", "fail")
    assert failed.exit_code == 1
    assert f"{tasks}:1: tasks " in failed.stderr
    assert "is already in the database (--on-conflict fail)" in failed.stderr


def sql_id(url: str, value: str) -> str:
    return f"X'{value.replace('-', '')}'" if url.startswith("sqlite") else f"'{value}'"


def test_an_interrupted_import_is_resumed_by_running_it_again(client, settings, target, tmp_path):
    user = factories.user(client)
    for number in range(40):
        factories.task(client, user["id"], title=f"Task {number}")
    folder = tmp_path / "export"
    before = checksums(cli(settings.database.url, "export", str(folder)))
    whole = (folder / "tasks.ndjson").read_bytes()
    cut = tmp_path / "cut" / "tasks.ndjson"
    cut.parent.mkdir()
    cut.write_bytes(whole[: len(whole) // 2])  # the file ends in the middle of a row: the transfer broke off
    assert cli(target, "import", str(folder / "users.ndjson")).exit_code == 0
    interrupted = cli(target, "import", str(cut))
    assert interrupted.exit_code == 1
    assert re.search(rf"{re.escape(str(cut))}:\d+: row: not a JSON object", interrupted.stderr)
    assert 0 < count(target, "tasks") < 40

    resumed = cli(target, "import", str(folder))
    assert resumed.exit_code == 0, resumed.output
    assert count(target, "tasks") == 40
    assert checksums(cli(target, "export", str(tmp_path / "again"))) == before
    inserts = run_sql(target, "SELECT count(*) FROM flux_dao_changes WHERE resource = 'tasks' AND op = 'insert'")
    assert inserts == [(40,)]  # each row went in exactly once, and the change feed recorded each


def test_self_referencing_goals_given_children_first(client, settings, target, tmp_path):
    user = factories.user(client)
    root = factories.goal(client, user["id"], title="root")
    middle = factories.goal(client, user["id"], title="middle", parent_goal_id=root["id"])
    factories.goal(client, user["id"], title="leaf", parent_goal_id=middle["id"])
    folder = tmp_path / "export"
    before = checksums(cli(settings.database.url, "export", str(folder)))
    goals = folder / "goals.ndjson"
    goals.write_text("".join(reversed(goals.read_text().splitlines(keepends=True))))
    imported = cli(target, "import", str(folder))
    assert imported.exit_code == 0, imported.output
    assert checksums(cli(target, "export", str(tmp_path / "again"))) == before


def test_a_missing_parent_goal_is_reported_and_the_goal_imported_without_it(client, settings, target, tmp_path):
    user = factories.user(client)
    factories.goal(client, user["id"], title="root")
    folder = tmp_path / "export"
    cli(settings.database.url, "export", str(folder))
    goals = folder / "goals.ndjson"
    goal = json.loads(goals.read_text()) | {"parent_goal_id": "01938000-0000-7000-8000-00000000dead"}
    goals.write_text(json.dumps(goal) + "\n")
    result = cli(target, "import", str(folder))
    assert result.exit_code == 1
    assert f"{goals}:1: parent_goal_id: goals {goal['parent_goal_id']} does not exist" in result.stderr
    assert count(target, "goals") == 1


def test_an_unmigrated_database_is_refused_with_the_command_to_run(fresh_url, tmp_path):
    (tmp_path / "users.ndjson").write_text("")
    result = cli(fresh_url, "import", str(tmp_path))
    assert result.exit_code == 1
    assert "has no table users: run `flux-dao migrate`" in result.output
    assert "no table" in cli(fresh_url, "export", str(tmp_path / "out")).output


def test_export_needs_a_folder_or_an_output_and_a_known_resource(settings):
    assert "give a FOLDER or -o FILE" in cli(settings.database.url, "export").output
    unknown = cli(settings.database.url, "export", "-o", "-", "--resource", "task")
    assert unknown.exit_code == 1
    assert "no resource 'task'" in unknown.output


def synthetic_export(folder: Path, tasks: int) -> None:
    """One user and ``tasks`` tasks of that user, as export writes them (the fields left out take their defaults)."""
    folder.mkdir()
    user = str(uuid.uuid4())
    stamp = "2030-01-01T00:00:00Z"
    stamps = {"created_at": stamp, "updated_at": stamp, "version": 1}
    (folder / "users.ndjson").write_text(json.dumps({"id": user, "email": "a@example.com", **stamps}) + "\n")
    with (folder / "tasks.ndjson").open("w") as out:
        for number in range(tasks):
            row = {"id": str(uuid.uuid4()), "user_id": user, "title": f"Task {number}", **stamps}
            out.write(json.dumps(row) + "\n")


@pytest.mark.slow
def test_an_import_killed_midway_is_completed_by_running_it_again(target, tmp_path):
    tasks = 60_000
    synthetic_export(tmp_path / "rows", tasks)
    command = [str(FLUX_DAO), "--manifest", str(MANIFEST), "import", str(tmp_path / "rows")]
    env = os.environ | {"FLUX_DAO_DATABASE_URL": target}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while count(target, "tasks") == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    written = count(target, "tasks")
    assert 0 < written < tasks, "the import was not caught midway"
    assert written % 5000 == 0  # whole batches only

    resumed = cli(target, "import", str(tmp_path / "rows"))
    assert resumed.exit_code == 0, resumed.output
    assert f"{tasks:,} rows: {tasks - written:,} inserted, 0 updated, {written:,} skipped" in resumed.stdout
    assert count(target, "tasks") == tasks
    inserts = run_sql(target, "SELECT count(*) FROM flux_dao_changes WHERE resource = 'tasks' AND op = 'insert'")
    assert inserts == [(tasks,)]


def goal_tree_moved(client: Any, settings: Any, target: str, folder: Path) -> dict[str, Any]:
    """A root goal and its child, exported to ``folder`` and imported into ``target``; the child."""
    user = factories.user(client)
    root = factories.goal(client, user["id"], title="root")
    child = factories.goal(client, user["id"], title="child", parent_goal_id=root["id"])
    cli(settings.database.url, "export", str(folder))
    assert cli(target, "import", str(folder)).exit_code == 0
    return child


def test_update_overwrites_a_self_reference_and_skip_leaves_it(client, settings, target, tmp_path):
    folder = tmp_path / "export"
    child = goal_tree_moved(client, settings, target, folder)
    goals = folder / "goals.ndjson"
    rows = [json.loads(line) for line in goals.read_text().splitlines()]
    for row in rows:
        if row["id"] == child["id"]:
            row["parent_goal_id"] = None
    goals.write_text("".join(json.dumps(row) + "\n" for row in rows))
    parent_of_child = f"SELECT parent_goal_id IS NULL FROM goals WHERE id = {sql_id(target, child['id'])}"  # noqa: S608

    assert cli(target, "import", str(goals)).exit_code == 0
    assert [bool(value) for (value,) in run_sql(target, parent_of_child)] == [False]  # skip: as it was
    assert cli(target, "import", str(goals), "--on-conflict", "update").exit_code == 0
    assert [bool(value) for (value,) in run_sql(target, parent_of_child)] == [True]  # update: as exported


def test_odd_lines_are_reported_one_line_each_and_the_rest_go_in(client, settings, target, tmp_path):
    user = factories.user(client, email="odd@example.com")
    folder = tmp_path / "export"
    cli(settings.database.url, "export", str(folder), "--resource", "users")
    [line] = (folder / "users.ndjson").read_text().splitlines()
    row = json.loads(line)
    shallow = {k: v for k, v in row.items() if k != "profile"} | {"id": "01938000-0000-7000-8000-0000000000a1"}
    deep = json.dumps(shallow | {"email": "deep@example.com"})[:-1] + ', "profile": ' + '{"a":' * 3000 + "1"
    deep += "}" * 3000 + "}"
    nul = row | {"id": "01938000-0000-7000-8000-0000000000a2", "email": "nul@example.com", "profile": {"k": "a\u0000b"}}
    forged = row | {"id": "01938000-0000-7000-8000-0000000000a3", "email": "forged@example.com", "x\nfake: line": 1}
    again = row | {"email": "again@example.com"}  # the first row's id once more
    text = "\ufeff" + "\n".join([line, deep, json.dumps(nul), json.dumps(forged), json.dumps(again)])
    (folder / "users.ndjson").write_text(text + "\n", encoding="utf-8")
    result = cli(target, "import", str(folder))
    assert result.exit_code == 1
    problems = [entry for entry in result.output.splitlines() if "users.ndjson:" in entry]
    assert [entry.split("users.ndjson:", 1)[1].split(":")[0] for entry in problems] == ["2", "3", "4", "5"]
    assert "2: row: nested too deeply" in problems[0]
    assert "3: profile: must not contain NUL" in problems[1]  # as PostgreSQL would refuse it: on both backends
    assert "4: x\\nfake: line: contains unknown field" in problems[2]  # the newline shown escaped: one line
    assert "5: id: is the id of line 1 too: left out" in problems[3]
    assert "5 rows: 1 inserted, 0 updated, 0 skipped, 4 rejected" in result.stdout
    assert run_sql(target, "SELECT email FROM users") == [(user["email"],)]


def test_skip_leaves_a_stored_row_alone_in_the_second_pass_too(client, settings, target, tmp_path):
    folder = tmp_path / "export"
    child = goal_tree_moved(client, settings, target, folder)
    detached = client.patch(f"{API}/goals/{child['id']}", json={"parent_goal_id": None}).json()
    cli(settings.database.url, "export", str(tmp_path / "changed"))
    child_row = f"SELECT parent_goal_id IS NULL, version FROM goals WHERE id = {sql_id(target, child['id'])}"  # noqa: S608
    assert cli(target, "import", str(tmp_path / "changed"), "--on-conflict", "update").exit_code == 0
    assert [(bool(a), b) for a, b in run_sql(target, child_row)] == [(True, detached["version"])]
    # the first export says the child has a parent; skip leaves the stored (detached) row as it is
    skipped = cli(target, "import", str(folder))
    assert skipped.exit_code == 0, skipped.output
    assert [(bool(a), b) for a, b in run_sql(target, child_row)] == [(True, detached["version"])]


def test_an_empty_export_imports_as_nothing(settings, target):
    empty = cli(settings.database.url, "export", "-o", "-")
    assert empty.stdout_bytes == b""
    imported = cli(target, "import", "-", stdin=b"")
    assert imported.exit_code == 0, imported.output


def test_an_id_given_again_in_a_later_batch_is_counted_as_skipped_not_inserted(client, settings, target, tmp_path):
    factories.user(client, email="batch@example.com")
    folder = tmp_path / "export"
    cli(settings.database.url, "export", str(folder), "--resource", "users")
    [line] = (folder / "users.ndjson").read_text().splitlines()
    row = json.loads(line)
    lines = [line] + [
        json.dumps(row | {"id": f"01938000-0000-7000-8000-{index:012x}", "email": f"u{index}@example.com"})
        for index in range(1, 5001)
    ]
    lines.append(json.dumps(row | {"email": "later@example.com"}))  # line 5002: the second batch, the first id
    (folder / "users.ndjson").write_text("\n".join(lines) + "\n")
    result = cli(target, "import", str(folder))
    assert result.exit_code == 0, result.output
    assert "5,002 rows: 5,001 inserted, 0 updated, 1 skipped, 0 rejected" in result.stdout
    assert run_sql(target, "SELECT count(*) FROM users") == [(5001,)]
