"""Keyset cursors: sealed positions a client can only hand back unchanged, for the query they were made for.

The columns are the project's own (``resources.yaml``): one of each type a sort can use, nullable and not.
"""

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest

from flux_dao.http.cursor import CursorError, CursorSeal, cursor_secret_from_keys, query_digest
from flux_dao.manifest import load_manifest
from flux_dao.manifest.columns import ColumnInfo, OrderTerm, columns
from flux_dao.query.plans import Condition

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT / "resources.yaml")
TASKS = columns(MANIFEST.entity("tasks"))
INFO: dict[str, ColumnInfo] = {
    **TASKS,
    "onboarded": columns(MANIFEST.entity("users"))["onboarded"],  # boolean
    "confidence": columns(MANIFEST.entity("patterns"))["confidence"],  # float, nullable
}
SEAL = CursorSeal("the service's secret")
WHEN = datetime(2026, 1, 31, 9, 30, 15, 123456, tzinfo=UTC)
ROW_ID = UUID("01940000-0000-7000-8000-00000000abcd")
CONDITIONS = (Condition("status", "in", ("pending", "missed")), Condition("user_id", "eq", ROW_ID))
ORDER = (OrderTerm("scheduled_at"), OrderTerm("title", descending=True), OrderTerm("id"))
DIGEST = query_digest(CONDITIONS, ORDER)


def test_the_columns_cover_every_sortable_type() -> None:
    kinds = {(INFO[name].type, INFO[name].nullable) for name in INFO if INFO[name].sortable}
    assert {("uuid", False), ("string", False), ("string", True), ("enum", False), ("integer", True)} <= kinds
    assert {("datetime", False), ("datetime", True), ("float", True), ("boolean", False)} <= kinds


def round_trip(field: str, value: Any) -> Any:
    order = (OrderTerm(field), OrderTerm("id"))
    digest = query_digest((), order)
    [found, row_id] = SEAL.open(SEAL.make(digest, [value, ROW_ID]), digest, order, INFO)
    assert row_id == ROW_ID
    assert type(row_id) is UUID
    return found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ROW_ID),
        ("user_id", UUID(int=0)),
        ("title", "Run 5 km"),
        ("title", ""),
        ("title", 'ünïcødé "quoted" \\ / \u2028 ☃'),
        ("description", None),
        ("status", "pending"),
        ("duration_minutes", 45),
        ("duration_minutes", -(2**31)),
        ("duration_minutes", None),
        ("created_at", WHEN),
        ("scheduled_at", datetime(1, 1, 1, tzinfo=UTC)),
        ("scheduled_at", None),
        ("confidence", 0.1),
        ("confidence", 1.0),
        ("confidence", None),
        ("onboarded", True),
        ("onboarded", False),
    ],
)
def test_each_column_type_round_trips(field: str, value: Any) -> None:
    found = round_trip(field, value)
    assert found == value
    assert type(found) is type(value)
    if isinstance(value, datetime):
        offset = found.utcoffset()
        assert offset is not None
        assert offset.total_seconds() == 0


def test_a_whole_position_round_trips() -> None:
    values = (None, "Run", ROW_ID)
    assert SEAL.open(SEAL.make(DIGEST, list(values)), DIGEST, ORDER, INFO) == values


def test_a_cursor_is_url_safe_text() -> None:
    cursor = SEAL.make(DIGEST, ["?&=+/" * 20, "x", ROW_ID])
    assert cursor.isascii()
    assert not set(cursor) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_cursor_does_not_depend_on_anything_but_its_inputs() -> None:
    assert SEAL.make(DIGEST, [WHEN, "x", ROW_ID]) == CursorSeal("the service's secret").make(
        DIGEST, [WHEN, "x", ROW_ID]
    )


# --- refused: changed, foreign, for another query ----------------------------------------------------------------

CURSOR = SEAL.make(DIGEST, [WHEN, "Run", ROW_ID])


def raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def refused(cursor: str, digest: str = DIGEST, order: tuple[OrderTerm, ...] = ORDER) -> str:
    with pytest.raises(CursorError) as info:
        SEAL.open(cursor, digest, order, INFO)
    return str(info.value)


def test_the_untouched_cursor_opens() -> None:
    assert SEAL.open(CURSOR, DIGEST, ORDER, INFO) == (WHEN, "Run", ROW_ID)


@pytest.mark.parametrize("flip", [0x01, 0x80])
def test_changing_any_byte_is_refused(flip: int) -> None:
    data = raw(CURSOR)
    for index in range(len(data)):
        changed = bytearray(data)
        changed[index] ^= flip
        assert refused(text(bytes(changed))) == "is not a cursor this service made, or was changed", index


def test_changing_any_character_is_refused() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index, char in enumerate(CURSOR):
        other = alphabet[alphabet.index(char) ^ 0b100000]  # the sextet's top bit: significant in every position
        assert refused(CURSOR[:index] + other + CURSOR[index + 1 :]).startswith("is not a cursor"), index


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "a",
        "!!!!",
        "not a cursor",
        CURSOR[:-1],
        CURSOR[1:],
        CURSOR + "A",
        CURSOR[:20],
        text(raw(CURSOR)[:-1]),  # the MAC cut short
        text(raw(CURSOR)[-16:]),  # a MAC alone
        text(b""),
    ],
)
def test_garbage_is_refused(cursor: str) -> None:
    assert refused(cursor).startswith("is not a cursor this service made")


def test_a_cursor_of_another_secret_is_refused() -> None:
    other = CursorSeal("another service's secret").make(DIGEST, [WHEN, "Run", ROW_ID])
    assert refused(other) == "is not a cursor this service made, or was changed"


def test_a_cursor_reforged_without_the_secret_is_refused() -> None:
    payload = msgspec.json.encode([DIGEST, [None, "Run", str(ROW_ID)]])
    forged = text(payload + raw(CURSOR)[-16:])  # another position under the old MAC
    assert refused(forged) == "is not a cursor this service made, or was changed"


@pytest.mark.parametrize(
    "conditions",
    [
        (),
        CONDITIONS[:1],
        (Condition("status", "in", ("pending",)), CONDITIONS[1]),
        (Condition("status", "in", ("pending", "missed", "done")), CONDITIONS[1]),
        (Condition("status", "ne", ("pending", "missed")), CONDITIONS[1]),
        (CONDITIONS[0], Condition("user_id", "eq", UUID(int=1))),
        (CONDITIONS[0], Condition("goal_id", "eq", ROW_ID)),
        (*CONDITIONS, Condition("goal_id", "isnull", True)),
    ],
)
def test_a_cursor_for_other_filters_is_refused(conditions: tuple[Condition, ...]) -> None:
    assert refused(CURSOR, digest=query_digest(conditions, ORDER)) == (
        "was made for other filters or another sort; send them unchanged with the cursor"
    )


@pytest.mark.parametrize(
    "order",
    [
        (OrderTerm("scheduled_at", descending=True), OrderTerm("title", descending=True), OrderTerm("id")),
        (OrderTerm("scheduled_at"), OrderTerm("title"), OrderTerm("id")),
        (OrderTerm("scheduled_at"), OrderTerm("title", descending=True), OrderTerm("id", descending=True)),
        (OrderTerm("scheduled_at", nulls_first=True), OrderTerm("title", descending=True), OrderTerm("id")),
        (OrderTerm("completed_at"), OrderTerm("title", descending=True), OrderTerm("id")),
        (OrderTerm("title", descending=True), OrderTerm("scheduled_at"), OrderTerm("id")),
    ],
)
def test_a_cursor_for_another_sort_is_refused(order: tuple[OrderTerm, ...]) -> None:
    message = "was made for other filters or another sort; send them unchanged with the cursor"
    assert refused(CURSOR, digest=query_digest(CONDITIONS, order), order=order) == message


def test_the_digest_is_a_function_of_filters_and_order() -> None:
    same = (Condition("status", "in", ("pending", "missed")), Condition("user_id", "eq", UUID(str(ROW_ID))))
    assert query_digest(same, tuple(ORDER)) == DIGEST
    assert query_digest(CONDITIONS, ORDER[:2]) != DIGEST


def test_an_oversized_cursor_is_refused_before_it_is_decoded() -> None:
    big = SEAL.make(DIGEST, [WHEN, "x" * 4000, ROW_ID])
    assert len(big) > 4096
    assert refused(big) == "is not a cursor this service made"
    assert refused("A" * 4097) == "is not a cursor this service made"


# --- a validly sealed payload holding the wrong values (as with a leaked secret) -----------------------------------


def sealed(payload: bytes) -> str:
    """``payload`` sealed with the service's own key, as ``CursorSeal.make`` would."""
    key: bytes = SEAL._key
    return text(payload + hmac.new(key, payload, hashlib.sha256).digest()[:16])


def test_sealed_helper_seals_like_the_service() -> None:
    payload = msgspec.json.encode([DIGEST, [WHEN, "Run", ROW_ID]])
    assert sealed(payload) == CURSOR


@pytest.mark.parametrize(
    "payload",
    [b"null", b"{}", b"[]", b"not json", b'["%s"]', b'["%s", {}]', b'["%s", "x"]', b"[1, []]", b'["%s", [], 1]'],
)
def test_a_sealed_payload_of_the_wrong_shape_is_refused(payload: bytes) -> None:
    message = refused(sealed(payload.replace(b"%s", DIGEST.encode())))
    assert message == "is not a cursor this service made"


def test_a_sealed_empty_payload_is_refused() -> None:
    assert refused(sealed(b"")) == "is not a cursor this service made, or was changed"


@pytest.mark.parametrize("values", [[], [WHEN, "Run"], [WHEN, "Run", ROW_ID, ROW_ID]])
def test_a_sealed_position_of_another_length_is_refused(values: list[Any]) -> None:
    assert refused(SEAL.make(DIGEST, values)) == "does not fit this order"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", 1),
        ("title", None),  # never null
        ("title", ["Run"]),
        ("status", 1),
        ("status", None),
        ("duration_minutes", "45"),
        ("duration_minutes", 4.5),
        ("duration_minutes", True),
        ("confidence", "0.5"),
        ("confidence", False),
        ("onboarded", 1),
        ("onboarded", "true"),
        ("onboarded", None),
        ("created_at", "yesterday"),
        ("created_at", 1767225600),
        ("created_at", None),
        ("id", "not-a-uuid"),
        ("id", None),
        ("user_id", str(ROW_ID)[:-1]),
    ],
)
def test_a_sealed_value_of_the_wrong_type_is_refused(field: str, value: Any) -> None:
    order = (OrderTerm(field), OrderTerm("id"))
    digest = query_digest((), order)
    message = refused(SEAL.make(digest, [value, ROW_ID]), digest=digest, order=order)
    assert field in message
    assert message.startswith("holds ")


@pytest.mark.parametrize("value", [123, [1], {"a": 1}, True])
def test_a_sealed_non_text_uuid_is_refused(value: Any) -> None:
    order = (OrderTerm("id"),)
    digest = query_digest((), order)
    message = refused(SEAL.make(digest, [value]), digest=digest, order=order)
    assert message == "holds a value of the wrong type for 'id'"


# --- the secret ---------------------------------------------------------------------------------------------------


def test_the_default_secret_is_the_keys_in_any_order() -> None:
    assert cursor_secret_from_keys(["b", "a"]) == cursor_secret_from_keys(["a", "b"])
    assert cursor_secret_from_keys(["a"]) != cursor_secret_from_keys(["a", "b"])
    assert cursor_secret_from_keys([]) == "flux-dao open mode"


def test_replicas_with_the_same_keys_open_each_others_cursors() -> None:
    one = CursorSeal(cursor_secret_from_keys(["k1", "k2"]))
    two = CursorSeal(cursor_secret_from_keys(["k2", "k1"]))
    assert two.open(one.make(DIGEST, [None, "a", ROW_ID]), DIGEST, ORDER, INFO) == (None, "a", ROW_ID)
    three = CursorSeal(cursor_secret_from_keys(["k1"]))
    with pytest.raises(CursorError):
        three.open(one.make(DIGEST, [None, "a", ROW_ID]), DIGEST, ORDER, INFO)
