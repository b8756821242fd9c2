"""Service keys: who is calling, and what each caller may do.

Two sources, merged into one ``KeyRing`` at start-up:

- ``SERVICE_API_KEYS``: unnamed keys with full access (named ``service-key-1``, ``service-key-2``... in logs);
- ``FLUX_DAO_KEYS_FILE``: a YAML mapping of key names to a key (``key_sha256``, the hex SHA-256 of the key, so the
  file holds no secret; or ``key``, the key itself) and its scopes::

      scheduler:
        key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        scopes: [tasks:read, tasks:write, users:read]
      observer:
        key_sha256: ...
        scopes: ["*:read"]

A scope is ``<resource>:<action>``: the resource is a manifest resource name or ``*``, the action ``read`` (GET) or
``write`` (every other method) or ``*``. Keys are only ever held as SHA-256 digests, compared in constant time.
"""

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from flux_dao.errors import FluxDaoError

__all__ = (
    "ACTIONS",
    "MAX_NAME_LENGTH",
    "KeyRing",
    "KeysFileError",
    "ServiceKey",
    "build_keyring",
    "digest",
    "required_scope",
)

ACTIONS: Final = ("read", "write")
_READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_HEX_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


MAX_NAME_LENGTH: Final = 200
"""The longest key name (a name is stored with each of its idempotency records, in a 255-character column)."""


class KeysFileError(FluxDaoError):
    """The keys file cannot be used; the message names the file, the key and the problem."""


def digest(key: bytes) -> bytes:
    """The SHA-256 digest keys are stored and compared as."""
    return hashlib.sha256(key).digest()


def required_scope(resource: str, method: str) -> str:
    """The scope a request needs: ``tasks:read`` to GET (or ask OPTIONS of) a task route, ``tasks:write`` otherwise."""
    return f"{resource}:{'read' if method in _READ_METHODS else 'write'}"


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """One caller: its name (what logs show), its key's digest and what it may do."""

    name: str
    digest: bytes
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether ``scope`` (``resource:action``) is granted, directly or through a wildcard."""
        resource, _, action = scope.partition(":")
        return not self.scopes.isdisjoint((scope, f"*:{action}", f"{resource}:*", "*:*"))


class KeyRing:
    """Every accepted key; ``identify`` finds the caller in constant time."""

    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[ServiceKey]) -> None:
        self.keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def identify(self, supplied: bytes) -> ServiceKey | None:
        """The key ``supplied`` is, or None.

        Every stored digest is compared (no early exit), so the time taken tells nothing about which key came close.
        """
        candidate = digest(supplied)
        found: ServiceKey | None = None
        for key in self.keys:
            if hmac.compare_digest(candidate, key.digest):
                found = key
        return found


class _KeyEntry(msgspec.Struct, forbid_unknown_fields=True):
    scopes: list[str]
    key_sha256: str | None = None
    key: str | None = None


def _check_scope(scope: str, resources: frozenset[str], where: str) -> None:
    resource, sep, action = scope.partition(":")
    if not sep or action not in (*ACTIONS, "*"):
        msg = f"{where}: scope {scope!r} must be <resource>:<read|write|*>"
        raise KeysFileError(msg)
    if resource != "*" and resource not in resources:
        known = ", ".join(sorted(resources))
        msg = f"{where}: scope {scope!r} names no resource of the manifest (known: {known}, or *)"
        raise KeysFileError(msg)


def _entry_digest(entry: _KeyEntry, where: str) -> bytes:
    if (entry.key_sha256 is None) == (entry.key is None):
        msg = f"{where}: give exactly one of key_sha256 (the hex SHA-256 of the key) or key"
        raise KeysFileError(msg)
    if entry.key is not None:
        if not entry.key:
            msg = f"{where}: key is empty"
            raise KeysFileError(msg)
        return digest(entry.key.encode("utf-8"))
    hex_digest = (entry.key_sha256 or "").strip().lower()
    if not _HEX_SHA256.match(hex_digest):
        msg = f"{where}: key_sha256 must be 64 hexadecimal characters"
        raise KeysFileError(msg)
    return bytes.fromhex(hex_digest)


def load_keys_file(path: Path, resources: frozenset[str]) -> list[ServiceKey]:
    """Read and check a keys file; every problem names the file and the key."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the keys file: {exc.strerror or exc}"
        raise KeysFileError(msg) from exc
    try:
        entries = msgspec.yaml.decode(raw, type=dict[str, _KeyEntry])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        msg = f"{path}: {exc}"
        raise KeysFileError(msg) from exc
    if not entries:
        msg = f"{path}: the keys file defines no keys (every request would be refused, or the API left open)"
        raise KeysFileError(msg)
    keys = []
    for name, entry in entries.items():
        where = f"{path}: key {name!r}"
        if len(name) > MAX_NAME_LENGTH:
            msg = f"{where}: a key's name is at most {MAX_NAME_LENGTH} characters (idempotency records hold it)"
            raise KeysFileError(msg)
        if not entry.scopes:
            msg = f"{where}: scopes is empty (grant at least one, e.g. tasks:read)"
            raise KeysFileError(msg)
        for scope in entry.scopes:
            _check_scope(scope, resources, where)
        keys.append(ServiceKey(name=name, digest=_entry_digest(entry, where), scopes=frozenset(entry.scopes)))
    return keys


def build_keyring(api_keys: Iterable[str], keys_file: Path | None, resources: frozenset[str]) -> KeyRing:
    """``SERVICE_API_KEYS`` (full access) plus the keys file; the same key twice is refused as ambiguous."""
    keys = [
        ServiceKey(name=f"service-key-{n}", digest=digest(k.encode("utf-8")), scopes=frozenset({"*:*"}))
        for n, k in enumerate(dict.fromkeys(api_keys), start=1)
    ]
    if keys_file is not None:
        keys += load_keys_file(keys_file, resources)
    seen: dict[bytes, str] = {}
    for key in keys:
        if key.digest in seen:
            msg = f"{keys_file}: the keys {seen[key.digest]!r} and {key.name!r} are the same key; give each its own"
            raise KeysFileError(msg)
        seen[key.digest] = key.name
    return KeyRing(keys)
