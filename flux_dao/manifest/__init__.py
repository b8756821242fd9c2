"""The manifest: ``resources.yaml`` decoded and checked into an immutable value."""

from flux_dao.manifest.loader import load_manifest, parse_manifest
from flux_dao.manifest.spec import EntitySpec, FieldSpec, Manifest

__all__ = ("EntitySpec", "FieldSpec", "Manifest", "load_manifest", "parse_manifest")
