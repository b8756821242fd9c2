"""Read ``resources.yaml`` into a validated, immutable :class:`Manifest`.

Each entity and field is decoded on its own, so a syntax error names the file, the entity and the field it sits in;
``checks.validate`` then runs the semantic checks over the whole manifest.
"""

from pathlib import Path
from typing import Any

import msgspec
import yaml

from flux_dao.errors import ManifestError
from flux_dao.manifest.checks import validate
from flux_dao.manifest.spec import EntitySpec, FieldSpec, Manifest

__all__ = ("load_manifest", "parse_manifest")


def load_manifest(path: str | Path) -> Manifest:
    """Load and validate the manifest at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read the manifest: {exc.strerror or exc}"
        raise ManifestError(msg) from exc
    return parse_manifest(text, source=str(path))


def parse_manifest(text: str, source: str = "resources.yaml") -> Manifest:
    """Parse manifest text; ``source`` is quoted in error messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{source}: not valid YAML: {exc}"
        raise ManifestError(msg) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("resources"), dict) or not raw["resources"]:
        msg = f"{source}: expected a mapping with a non-empty 'resources' mapping at the top level"
        raise ManifestError(msg)
    unknown = sorted(set(raw) - {"version", "resources"})
    if unknown:
        msg = f"{source}: unknown top-level key(s): {', '.join(unknown)}"
        raise ManifestError(msg)
    if raw.get("version", 1) != 1:
        msg = f"{source}: unsupported manifest version {raw.get('version')!r} (this flux-dao reads version 1)"
        raise ManifestError(msg)
    entities = tuple(_decode_entity(source, str(name), body) for name, body in raw["resources"].items())
    manifest = Manifest(entities=entities, source=source)
    validate(manifest)
    return manifest


def _decode_entity(source: str, name: str, body: Any) -> EntitySpec:
    where = f"{source}: resource '{name}'"
    if not isinstance(body, dict):
        msg = f"{where}: expected a mapping"
        raise ManifestError(msg)
    if "name" in body:
        msg = f"{where}: 'name' is taken from the key and cannot be set"
        raise ManifestError(msg)
    raw_fields = body.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        msg = f"{where}: expected a non-empty 'fields' mapping"
        raise ManifestError(msg)
    fields = {str(f): _decode_field(where, str(f), spec) for f, spec in raw_fields.items()}
    try:
        entity = msgspec.convert({**body, "fields": {}}, EntitySpec)
    except msgspec.ValidationError as exc:
        msg = f"{where}: {_describe(exc)}"
        raise ManifestError(msg) from exc
    singular = entity.singular or (name[:-1] if name.endswith("s") and len(name) > 1 else name)
    path = entity.path or name.replace("_", "-")
    stamps = entity.timestamps if "updated_at" in entity.timestamps else (*entity.timestamps, "updated_at")
    return msgspec.structs.replace(entity, name=name, fields=fields, singular=singular, path=path, timestamps=stamps)


def _decode_field(where: str, name: str, spec: Any) -> FieldSpec:
    if not isinstance(spec, dict):
        msg = f"{where}, field '{name}': expected a mapping with at least 'type'"
        raise ManifestError(msg)
    try:
        return msgspec.convert(spec, FieldSpec)
    except msgspec.ValidationError as exc:
        msg = f"{where}, field '{name}': {_describe(exc)}"
        raise ManifestError(msg) from exc


def _describe(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's ``... - at `$.x.y``` into ``x.y: ...`` so the key path reads first."""
    text = str(exc)
    message, sep, location = text.rpartition(" - at `$")
    if not sep:
        return text
    return f"{location.rstrip('`').lstrip('.')}: {message}"
