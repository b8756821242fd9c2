"""The order resources move in: parents before children, read off the manifest's ``references``.

A reference to the resource itself (``goals.parent_goal_id``) does not order anything: such a field is written in
a second pass, once every row of the resource is in (see ``load``). A cycle between two or more resources has no
such order, and is refused naming it.
"""

from dataclasses import dataclass

from flux_dao.errors import TransferError
from flux_dao.manifest.spec import EntitySpec, Manifest

__all__ = ("Step", "chosen_steps", "dependency_order")


@dataclass(frozen=True)
class Step:
    """One resource in dependency order."""

    entity: EntitySpec
    parents: dict[str, str]
    """Reference field to the other resource it points to."""
    self_references: tuple[str, ...]
    """Fields that reference this same resource: written in a second pass."""

    @property
    def name(self) -> str:
        """The resource (table) name."""
        return self.entity.name


def dependency_order(manifest: Manifest) -> tuple[Step, ...]:
    """Every entity, each after the ones it references; ties keep the manifest's order (stable, so exports compare).

    Raises:
        TransferError: resources reference each other in a cycle (other than a resource referencing itself).
    """
    steps = {entity.name: _step(entity) for entity in manifest.entities}
    done: list[Step] = []
    placed: set[str] = set()
    while len(done) < len(steps):
        ready = next(
            (step for name, step in steps.items() if name not in placed and placed.issuperset(step.parents.values())),
            None,
        )
        if ready is None:
            cycle = sorted(name for name in steps if name not in placed)
            msg = f"resources reference each other in a cycle ({', '.join(cycle)}): no order puts parents first"
            raise TransferError(msg)
        done.append(ready)
        placed.add(ready.name)
    return tuple(done)


def chosen_steps(manifest: Manifest, names: tuple[str, ...]) -> list[Step]:
    """The resources named (all when none), in dependency order.

    Raises:
        TransferError: a name is not a resource of the manifest.
    """
    steps = dependency_order(manifest)
    unknown = sorted(set(names) - {step.name for step in steps})
    if unknown:
        known = ", ".join(step.name for step in steps)
        msg = f"no resource {', '.join(map(repr, unknown))} in {manifest.source} (resources: {known})"
        raise TransferError(msg)
    return [step for step in steps if not names or step.name in names]


def _step(entity: EntitySpec) -> Step:
    parents = {
        name: spec.references
        for name, spec in entity.fields.items()
        if spec.references is not None and spec.references != entity.name
    }
    own = tuple(name for name, spec in entity.fields.items() if spec.references == entity.name)
    return Step(entity=entity, parents=parents, self_references=own)
