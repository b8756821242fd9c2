"""Dependency order for export and import (issue #14): parents first, self-references deferred, cycles refused."""

import pytest

from flux_dao.errors import TransferError
from flux_dao.manifest import load_manifest, parse_manifest
from flux_dao.store.transfer.order import chosen_steps, dependency_order
from tests.conftest import MANIFEST


def test_the_project_resources_come_parents_first():
    steps = dependency_order(load_manifest(MANIFEST))
    names = [step.name for step in steps]
    assert names == ["users", "goals", "tasks", "conversations", "patterns", "notification_log"]
    goals = steps[1]
    assert goals.parents == {"user_id": "users"}
    assert goals.self_references == ("parent_goal_id",)
    assert steps[2].parents == {"user_id": "users", "goal_id": "goals"}


def test_a_child_declared_before_its_parent_moves_after_it():
    manifest = parse_manifest(
        """
version: 1
resources:
  notes:
    fields:
      folder_id: {type: uuid, references: folders}
  folders:
    fields:
      parent_id: {type: uuid, references: folders}
      name: {type: string}
  tags:
    fields:
      name: {type: string}
"""
    )
    steps = dependency_order(manifest)
    assert [step.name for step in steps] == ["folders", "notes", "tags"]
    assert steps[0].self_references == ("parent_id",)
    assert steps[0].parents == {}


def test_a_cycle_between_resources_is_refused_naming_them():
    manifest = parse_manifest(
        """
version: 1
resources:
  a:
    fields:
      b_id: {type: uuid, references: b}
  b:
    fields:
      a_id: {type: uuid, references: a}
  c:
    fields:
      name: {type: string}
"""
    )
    with pytest.raises(TransferError, match=r"cycle \(a, b\)"):
        dependency_order(manifest)


def test_chosen_resources_keep_dependency_order_and_unknown_names_are_refused():
    manifest = load_manifest(MANIFEST)
    assert [step.name for step in chosen_steps(manifest, ("tasks", "users"))] == ["users", "tasks"]
    with pytest.raises(TransferError, match=r"no resource 'task' in .* \(resources: users, goals, tasks"):
        chosen_steps(manifest, ("task",))
