"""Manifest checks of the two endpoint shapes a manifest declares: field-group updates (``updates``) and the list's
shape (``list``). ``flux-dao check`` explains each mistake naming the file, the resource and the key.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from flux_dao.errors import ManifestError
from flux_dao.manifest import parse_manifest
from flux_dao.manifest.columns import list_order
from flux_dao.manifest.names import component_names, operation_ids
from flux_dao.ops.cli import main

SOURCE = "shapes.yaml"
BASE = """\
version: 1
resources:
  calls:
    fields:
      room: {type: string, required: true, filter: true}
      caller: {type: string, immutable: true}
      note: {type: string}
      ended_at: {type: datetime}
"""


def manifest(extra: str) -> str:
    return BASE + "".join(f"    {line}\n" for line in extra.splitlines())


def manifest_error(extra: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(manifest(extra), source=SOURCE)
    return str(info.value)


def test_a_well_formed_declaration_loads_with_its_names() -> None:
    loaded = parse_manifest(
        manifest("updates: {end: [ended_at, note]}\nlist: {shape: array, require: [room], order_by: [ended_at asc]}"),
        source=SOURCE,
    )
    (calls,) = loaded.entities
    assert calls.updates == {"end": ("ended_at", "note")}
    assert calls.listing.shape == "array"
    assert [(t.field, t.descending) for t in list_order(calls)] == [("ended_at", False), ("id", False)]
    assert "update_call_end" in operation_ids(calls)
    assert "CallEndUpdate" in component_names(calls)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("updates: {end: [finished_at]}", "updates 'end': 'finished_at' is not a field of 'calls'"),
        ("updates: {end: [version]}", "updates 'end': 'version' is not a field of 'calls' (the server sets it)"),
        ("updates: {end: [caller]}", "updates 'end': 'caller' is immutable"),
        ("updates: {end: []}", "updates 'end': lists no fields"),
        ("updates: {end: [note, note]}", "updates 'end': lists 'note' twice"),
        ("updates: {End-Call: [note]}", "updates 'End-Call': the group's name must be a lower-case identifier"),
        ("updates: {bulk: [note]}", "updates 'bulk': the path segment 'bulk' is taken"),
        ("updates: {end: note}", "Expected `array`, got `str`"),
        ("list: {shape: table}", "list.shape: Invalid enum value 'table'"),
        ("list: {require: [caller]}", "list: require names 'caller', which has no equality filter"),
        ("list: {require: [floor]}", "list: require names 'floor', which is not a field of 'calls'"),
        ("list: {order_by: [floor asc]}", "list: order_by names unknown field 'floor'"),
        ("list: {order_by: [note sideways]}", "list: order_by: order term 'note sideways' is not"),
        ("list: {sort: [note]}", "Object contains unknown field `sort`"),
        ("operations: [get]\nlist: {shape: array}", "list: the resource has no list operation"),
    ],
)
def test_a_wrong_declaration_is_explained(extra: str, expected: str) -> None:
    message = manifest_error(extra)
    assert SOURCE in message
    assert expected in message, message
    assert "resource 'calls'" in message, message


def test_check_explains_a_wrong_declaration(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "resources.yaml").write_text(manifest("updates: {end: [finished_at]}"), encoding="utf-8")
    result = CliRunner().invoke(main, ["--manifest", str(folder / "resources.yaml"), "check"])
    assert result.exit_code == 1
    assert "resource 'calls', updates 'end': 'finished_at' is not a field of 'calls'" in result.output
