"""OpenAPI schema plugins that make the document generate pleasant clients with the generators' default settings.

- Free-form JSON fields (``flux_dao.types.JsonObject``) all refer to one ``JsonObject`` component. Inline, each
  field became its own helper model in openapi-python-client (``UserProfileType0``, ``UserCreateProfileType0``...),
  so a value read from one struct could not be passed to another.
- Request-only structs (``flux_dao.types.RequestStruct``) keep every field's ``default`` in the document, but one
  level down, in a one-branch ``anyOf``. openapi-typescript 7 (``defaultNonNullable``, on by default) reads a
  ``default`` on a component's property as "always present" and makes it required, which is right for responses and
  wrong for a create body: ``POST /users {email}`` would not compile. The wrapped schema accepts exactly the same
  values, and openapi-typescript makes the property optional.
"""

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from flux_dao.types import JsonObjectMark, RequestStruct

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

__all__ = ("JSON_OBJECT_COMPONENT", "JsonObjectSchemaPlugin", "RequestStructSchemaPlugin", "openapi_schema_plugins")

JSON_OBJECT_COMPONENT: Final = "JsonObject"


class JsonObject:
    """Stands for the ``JsonObject`` component in Litestar's schema registry (keyed by a type's module and name)."""


class JsonObjectSchemaPlugin(OpenAPISchemaPlugin):
    """Documents every ``JsonObject`` field as a reference to the one ``JsonObject`` component."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return any(isinstance(meta, JsonObjectMark) for meta in field_definition.metadata)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: "SchemaCreator") -> Schema:
        component = FieldDefinition.from_annotation(JsonObject)
        registry = schema_creator.schema_registry
        schema = registry.get_schema_for_field_definition(component)
        if schema.type is None:  # first use: fill the shared component once
            schema.type = OpenAPIType.OBJECT
            schema.additional_properties = Schema()
            schema.title = JSON_OBJECT_COMPONENT
            schema.description = "Any JSON object (a free-form field)."
        # Litestar's protocol names Schema, but its schema creator takes a Reference from a plugin as is
        return registry.get_reference_for_field_definition(component)  # type: ignore[return-value]


class RequestStructSchemaPlugin(OpenAPISchemaPlugin):
    """Documents a request-only struct like Litestar does, with each ``default`` moved into a one-branch ``anyOf``."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(RequestStruct)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: "SchemaCreator") -> Schema:
        litestars = next(  # Litestar's own struct plugin: it follows this one in the app's plugins
            p
            for p in schema_creator.plugins
            if p is not self and isinstance(p, OpenAPISchemaPlugin) and p.is_plugin_supported_field(field_definition)
        )
        schema = litestars.to_openapi_schema(field_definition, schema_creator)
        if schema.properties:
            schema.properties = {name: _default_one_level_down(s) for name, s in schema.properties.items()}
        return schema


def _default_one_level_down(schema: Schema | Reference) -> Schema | Reference:
    if not isinstance(schema, Schema) or schema.default is None:
        return schema
    return Schema(any_of=[replace(schema, description=None)], description=schema.description)


def openapi_schema_plugins() -> list[OpenAPISchemaPlugin]:
    """The plugins, in the order Litestar must ask them (before its own struct plugin)."""
    return [JsonObjectSchemaPlugin(), RequestStructSchemaPlugin()]
