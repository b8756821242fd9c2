"""Every generated name, in one place.

Class names become OpenAPI component names and operation ids become client method names, so both must be stable and
unique; ``manifest.checks`` rejects manifests whose names would collide.
"""

from typing import Final

from flux_dao.manifest.spec import BulkUpdateQuery, EntitySpec

__all__ = (
    "GENERATED_MODULE",
    "NAMING_CONVENTION",
    "SYSTEM_PREFIX",
    "class_name",
    "component_names",
    "enum_name",
    "group_operation_id",
    "group_path",
    "group_struct_name",
    "index_name",
    "operation_id",
    "operation_ids",
    "pascal",
    "query_operation_id",
    "query_struct_name",
    "struct_name",
)

SYSTEM_PREFIX: Final = "flux_dao_"
"""Tables the engine keeps for itself (idempotency records...) start with this; no resource may."""

GENERATED_MODULE: Final = "flux_dao.generated"
"""``__module__`` of every generated class; unique class names keep OpenAPI components apart."""

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names the database reports back; migrations and error translation rely on them."""


def pascal(text: str) -> str:
    """``notification_log`` / ``by-timerange`` -> ``NotificationLog`` / ``ByTimerange``."""
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", "_").split("_") if part)


def class_name(entity: EntitySpec) -> str:
    """Model and read-struct name: the singular in PascalCase (``Task``)."""
    return pascal(entity.singular or entity.name)


def struct_name(entity: EntitySpec, role: str) -> str:
    """``TaskCreate``, ``TaskUpdate``, ``TaskPage`` (``role`` is the suffix); the read struct is ``class_name``."""
    return class_name(entity) + role


def enum_name(entity: EntitySpec, field: str) -> str:
    """Enum component name: ``TaskStatus``."""
    return class_name(entity) + pascal(field)


def query_struct_name(entity: EntitySpec, query: str, suffix: str = "") -> str:
    """Struct for an extra query: ``TaskStatistics``, ``TaskBulkUpdateState``, ``TaskBulkUpdateStateResult``."""
    return class_name(entity) + pascal(query) + suffix


def operation_id(verb: str, entity: EntitySpec) -> str:
    """``list_tasks``, ``get_task``, ``create_task``, ``update_task``, ``delete_task``."""
    noun = entity.name if verb == "list" else (entity.singular or entity.name)
    return f"{verb}_{noun}"


def query_operation_id(entity: EntitySpec, query: str, explicit: str | None) -> str:
    """The manifest's ``operation_id``, else ``<query>_<entity>`` (``by_timerange_tasks``)."""
    return explicit or f"{query.replace('-', '_')}_{entity.name}"


def group_struct_name(entity: EntitySpec, group: str) -> str:
    """The body of a field group's update: ``ConversationVoiceUpdate``."""
    return struct_name(entity, pascal(group) + "Update")


def group_path(group: str) -> str:
    """A field group's URL segment: ``voice``, ``end_of_call`` -> ``end-of-call``."""
    return group.replace("_", "-")


def group_operation_id(entity: EntitySpec, group: str) -> str:
    """A field group's update: ``update_conversation_voice``."""
    return f"{operation_id('update', entity)}_{group}"


def component_names(entity: EntitySpec) -> list[str]:
    """Every OpenAPI component the generator makes for ``entity``: collisions across a manifest merge silently."""
    names = [class_name(entity), *(struct_name(entity, role) for role in ("Create", "Update", "Page"))]
    names += [enum_name(entity, f) for f, spec in entity.fields.items() if spec.type == "enum"]
    names += [group_struct_name(entity, group) for group in entity.updates]
    for query_name, query in entity.queries.items():
        names.append(query_struct_name(entity, query_name))
        if isinstance(query, BulkUpdateQuery):
            names.append(query_struct_name(entity, query_name, "Result"))
    return names


def operation_ids(entity: EntitySpec) -> list[str]:
    """Every operationId of ``entity``'s routes."""
    ids = [operation_id(verb, entity) for verb in entity.operations]
    ids += [query_operation_id(entity, name, query.operation_id) for name, query in entity.queries.items()]
    ids += [group_operation_id(entity, group) for group in entity.updates]
    return ids


def index_name(table: str, columns: tuple[str, ...]) -> str:
    """Name of a composite index, following ``NAMING_CONVENTION``."""
    return f"ix_{table}_{'_'.join(columns)}"
