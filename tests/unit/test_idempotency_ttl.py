"""``FLUX_DAO_IDEMPOTENCY_TTL``: how long an Idempotency-Key's answer is kept, as seconds or with a unit."""

import pytest

from flux_dao.config import Settings


def ttl(value: str) -> float:
    return Settings.from_env({"FLUX_DAO_IDEMPOTENCY_TTL": value}).idempotency_ttl


def test_the_default_is_24_hours():
    assert Settings.from_env({}).idempotency_ttl == 24 * 3600
    assert Settings.from_env({"FLUX_DAO_IDEMPOTENCY_TTL": ""}).idempotency_ttl == 24 * 3600  # empty counts as unset


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 15 * 60),
        ("24h", 24 * 3600),
        ("7d", 7 * 86400),
        ("1.5h", 5400),
        (" 2h ", 7200),
        ("1", 1),
    ],
)
def test_durations_with_or_without_a_unit(value, seconds):
    assert ttl(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["0", "0s", "0.0h", "-5", "-1h", "abc", "15x", "h", "15 minutes", "1h30m", "24H", "7 d d", "1e3", "inf", "nan"],
)
def test_anything_else_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match="FLUX_DAO_IDEMPOTENCY_TTL") as caught:
        ttl(value)
    assert repr(value) in str(caught.value)
