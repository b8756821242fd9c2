"""The embeds a resource offers, read off the manifest's references in both directions.

To-one: a reference field without its ``_id`` suffix (``tasks.goal_id`` -> ``goal``). To-many: the referencing
resource's name (``users`` <- ``tasks.user_id`` gives ``tasks``); when one resource references this one through
several fields, each is ``<resource>_by_<field without _id>``.
"""

from dataclasses import dataclass

from flux_dao.manifest.spec import EntitySpec, Manifest

__all__ = ("Embed", "embeds")


@dataclass(frozen=True, slots=True)
class Embed:
    """One embed: the rows of ``target`` related to a row of the embedding resource."""

    name: str
    target: str
    """The embedded resource."""
    many: bool
    """To-many (a list of children) or to-one (one parent, or null)."""
    via: str
    """The reference field: on the embedding resource (to-one) or on ``target`` (to-many)."""


def _stem(field: str) -> str:
    return field.removesuffix("_id")


def embeds(manifest: Manifest, entity: EntitySpec) -> dict[str, Embed]:
    """Every embed of ``entity``, to-one first, by name."""
    found = {
        _stem(name): Embed(_stem(name), spec.references, many=False, via=name)
        for name, spec in entity.fields.items()
        if spec.references is not None and spec.type == "uuid"
    }
    children = [
        (child.name, name)
        for child in manifest.entities
        for name, spec in child.fields.items()
        if spec.references == entity.name and spec.type == "uuid"
    ]
    for child, field in children:
        alone = sum(1 for other, _ in children if other == child) == 1
        name = child if alone else f"{child}_by_{_stem(field)}"
        found[name] = Embed(name, child, many=True, via=field)
    return found
