"""msgspec Structs built from the manifest: Create, Update, Read and Page per entity, and the enums.

Create and Update forbid unknown fields, so a misspelt or immutable key is a 422 naming it instead of silently lost
data. Update uses ``UNSET`` to tell "absent" from "null". Read structs carry plain types and are built positionally
from database rows without re-validation: a row stored before a constraint was tightened still reads.
"""

import copy
import enum
import functools
import itertools
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from flux_dao.manifest.names import GENERATED_MODULE, class_name, enum_name, group_struct_name, struct_name
from flux_dao.manifest.relations import Embed
from flux_dao.manifest.spec import VERSION, EntitySpec, Manifest
from flux_dao.schema.typemap import annotated_type, lookup
from flux_dao.types import RequestStruct, StructType

__all__ = ("EntitySchemas", "build_schemas", "request_struct")

_BUILDS = itertools.count(1)


@dataclass(frozen=True)
class EntitySchemas:
    """The generated structs of one entity."""

    create: StructType
    update: StructType
    read: StructType
    page: StructType
    enums: dict[str, type[enum.StrEnum]]
    """Enum class per enum field."""
    updates: Mapping[str, StructType]
    """The body of each field group's update (``updates:`` in the manifest), by group name."""


def build_schemas(manifest: Manifest, relations: Mapping[str, Mapping[str, Embed]]) -> dict[str, EntitySchemas]:
    """Build the structs of every entity, by entity name; names come from ``manifest.names``.

    A Read struct carries its embeds as optional fields typed with the other entities' Read structs, in both
    directions (``Task.goal: Goal``, ``Goal.tasks: list[Task]``): such cycles need forward references, resolved in
    a module of this build's own (two builds in one process stay apart).
    """
    module = _build_module()
    classes = {entity.name: class_name(entity) for entity in manifest.entities}
    built = {}
    for entity in manifest.entities:
        embedded = [(e.name, _embed_annotation(e, classes[e.target])) for e in relations[entity.name].values()]
        built[entity.name] = _entity_schemas(entity, embedded, module.__name__)
        setattr(module, classes[entity.name], built[entity.name].read)
    return built


def _build_module() -> types.ModuleType:
    module = types.ModuleType(f"{GENERATED_MODULE}_{next(_BUILDS)}")
    module.UnsetType = UnsetType  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    return module


def _embed_annotation(embed: Embed, target: str) -> str:
    return f"list[{target}] | UnsetType" if embed.many else f"{target} | None | UnsetType"


def _entity_schemas(entity: EntitySpec, embedded: list[tuple[str, str]], module: str) -> EntitySchemas:
    base = class_name(entity)
    enums: dict[str, type[enum.StrEnum]] = {
        name: enum.StrEnum(enum_name(entity, name), [(v, v) for v in spec.values or ()], module=GENERATED_MODULE)  # type: ignore[misc]
        for name, spec in entity.fields.items()
        if spec.type == "enum"
    }
    read = _read_struct(base, entity, enums, embedded, module)
    page = msgspec.defstruct(
        struct_name(entity, "Page"),
        [
            ("items", list[read]),  # type: ignore[valid-type]
            ("total", int | None),
            ("page", int | None),
            ("page_size", int),
            ("has_next", bool),
            ("has_prev", bool),
            ("next_cursor", str | None),
        ],
        module=GENERATED_MODULE,
        gc=False,
    )
    return EntitySchemas(
        create=_create_struct(base, entity, enums),
        update=_update_struct(struct_name(entity, "Update"), entity, enums),
        read=read,
        page=page,
        enums=enums,
        updates={
            group: _update_struct(group_struct_name(entity, group), entity, enums, fields)
            for group, fields in entity.updates.items()
        },
    )


def _create_struct(base: str, entity: EntitySpec, enums: dict[str, type[enum.StrEnum]]) -> StructType:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, spec in entity.fields.items():
        annotation = annotated_type(spec, enums.get(name))
        if spec.required:
            fields.append((name, annotation))
        elif spec.default is not UNSET:
            default = enums[name](spec.default) if name in enums else spec.default
            if isinstance(default, list | dict):  # a fresh copy per request
                default = msgspec.field(default_factory=functools.partial(copy.deepcopy, default))
            fields.append((name, annotation, default))
        else:
            fields.append((name, annotation | None, None))
    return request_struct(struct_name(entity, "Create"), fields)


def _update_struct(
    name_: str, entity: EntitySpec, enums: dict[str, type[enum.StrEnum]], only: Sequence[str] | None = None
) -> StructType:
    """Every field a PATCH may change (all but the immutable ones), or the group ``only`` lists."""
    fields: list[tuple[str, Any, Any]] = []
    for name, spec in entity.fields.items():
        if spec.immutable or (only is not None and name not in only):
            continue
        annotation = annotated_type(spec, enums.get(name))
        annotation = annotation | None | UnsetType if spec.nullable else annotation | UnsetType
        fields.append((name, annotation, UNSET))
    return request_struct(name_, fields)


def _read_struct(
    base: str,
    entity: EntitySpec,
    enums: dict[str, type[enum.StrEnum]],
    embedded: list[tuple[str, str]],
    module: str,
) -> StructType:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [("id", UUID)]
    for name, spec in entity.fields.items():
        python_type = lookup(spec).python_type(spec, enums.get(name))
        fields.append((name, python_type | None if spec.nullable else python_type))
    fields += [(stamp, datetime) for stamp in entity.timestamps]
    fields.append((VERSION, int))
    fields += [(name, annotation, UNSET) for name, annotation in embedded]  # left out of the JSON unless set
    # gc=False: rows read from the database hold scalars, dicts, lists and embedded rows (a tree: a row never holds
    # its own ancestor), never a cycle, so the collector need not track them (fewer and shorter collections on
    # list-heavy traffic)
    return msgspec.defstruct(base, fields, module=module, gc=False)


def request_struct(name: str, fields: Sequence[tuple[str, Any] | tuple[str, Any, Any]]) -> StructType:
    """A struct read only from request bodies: keyword-only, and an unknown key is a 422 naming it."""
    return msgspec.defstruct(
        name, fields, bases=(RequestStruct,), kw_only=True, forbid_unknown_fields=True, module=GENERATED_MODULE
    )
