"""Read replicas and poolers without a database: the settings, the consistency tokens, the standby's lag."""

import asyncio

import pytest

import flux_dao.store.standby as standby_module
from flux_dao.config import DatabaseSettings, PreparedStatements, Settings
from flux_dao.store.consistency import CONSISTENCY, Consistency, format_position, parse_position
from flux_dao.store.db import Database
from flux_dao.store.standby import Standby

PRIMARY = "postgres://flux:s3cr3t@primary:5432/flux"
STANDBY = "postgres://flux:s3cr3t@standby:6432/flux"
DIRECT = "postgresql://flux:s3cr3t@primary:5432/flux"
NOW = 1000.0


def from_env(**env: str) -> DatabaseSettings:
    return Settings.from_env({"DATABASE_URL": PRIMARY, **env}).database


# -- DB_PREPARED_STATEMENTS -----------------------------------------------------------------------------------------


def test_prepared_statements_default_to_auto():
    assert from_env().prepared_statements is PreparedStatements.AUTO
    assert DatabaseSettings().prepared_statements is PreparedStatements.AUTO


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("on", PreparedStatements.ON),
        ("ON", PreparedStatements.ON),
        (" Off ", PreparedStatements.OFF),
        ("off", PreparedStatements.OFF),
        ("Auto", PreparedStatements.AUTO),
    ],
)
def test_prepared_statements_are_read_in_any_case(raw, expected):
    assert from_env(DB_PREPARED_STATEMENTS=raw).prepared_statements is expected
    assert from_env(FLUX_DAO_DB_PREPARED_STATEMENTS=raw).prepared_statements is expected


def test_the_prefixed_prepared_statements_variable_wins():
    settings = from_env(DB_PREPARED_STATEMENTS="on", FLUX_DAO_DB_PREPARED_STATEMENTS="off")
    assert settings.prepared_statements is PreparedStatements.OFF


@pytest.mark.parametrize("name", ["DB_PREPARED_STATEMENTS", "FLUX_DAO_DB_PREPARED_STATEMENTS"])
@pytest.mark.parametrize("raw", ["maybe", "true", "1", "transaction"])
def test_a_bad_prepared_statements_value_names_the_variable_and_the_choices(name, raw):
    with pytest.raises(ValueError, match=f"^{name} must be one of auto\\|on\\|off, got '{raw}'$"):
        from_env(**{name: raw})


# -- DATABASE_DIRECT_URL / DATABASE_READ_URL ------------------------------------------------------------------------


def test_without_extra_urls_both_are_none():
    settings = from_env()
    assert settings.direct_url is None
    assert settings.read_url is None


@pytest.mark.parametrize("name", ["DATABASE_DIRECT_URL", "FLUX_DAO_DATABASE_DIRECT_URL"])
def test_the_direct_url_is_put_on_asyncpg(name):
    assert from_env(**{name: DIRECT}).direct_url == "postgresql+asyncpg://flux:s3cr3t@primary:5432/flux"


@pytest.mark.parametrize("name", ["DATABASE_READ_URL", "FLUX_DAO_DATABASE_READ_URL"])
def test_the_read_url_is_put_on_asyncpg(name):
    assert from_env(**{name: STANDBY}).read_url == "postgresql+asyncpg://flux:s3cr3t@standby:6432/flux"


def test_extra_urls_are_normalised_however_the_settings_are_built():
    settings = DatabaseSettings(url=PRIMARY, direct_url=DIRECT, read_url=STANDBY)
    assert settings.url == "postgresql+asyncpg://flux:s3cr3t@primary:5432/flux"
    assert settings.direct_url == "postgresql+asyncpg://flux:s3cr3t@primary:5432/flux"
    assert settings.read_url == "postgresql+asyncpg://flux:s3cr3t@standby:6432/flux"


@pytest.mark.parametrize("name", ["DATABASE_DIRECT_URL", "DATABASE_READ_URL"])
@pytest.mark.parametrize("database_url", ["sqlite:///./flux.db", "sqlite+aiosqlite:////data/flux.db", None])
def test_an_extra_url_is_refused_when_the_database_url_is_sqlite(name, database_url):
    env = {name: STANDBY} if database_url is None else {"DATABASE_URL": database_url, name: STANDBY}
    with pytest.raises(ValueError, match=f"^{name} needs PostgreSQL") as caught:
        Settings.from_env(env)  # None: DATABASE_URL unset, the SQLite default
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize("name", ["DATABASE_DIRECT_URL", "DATABASE_READ_URL"])
def test_an_extra_url_is_refused_when_it_is_sqlite(name):
    with pytest.raises(ValueError, match=f"^{name} needs PostgreSQL"):
        from_env(**{name: "sqlite:///./standby.db"})


def test_an_extra_url_on_sqlite_is_refused_however_the_settings_are_built():
    with pytest.raises(ValueError, match=r"^DATABASE_DIRECT_URL needs PostgreSQL"):
        DatabaseSettings(url=PRIMARY, direct_url="sqlite:///./standby.db")
    with pytest.raises(ValueError, match=r"^DATABASE_READ_URL needs PostgreSQL"):
        DatabaseSettings(url=PRIMARY, read_url="sqlite:///./standby.db")


@pytest.mark.parametrize("name", ["DATABASE_DIRECT_URL", "DATABASE_READ_URL"])
@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://flux:s3cr3t@db/flux", "unknown scheme"),
        ("flux:s3cr3t@db/flux", "malformed"),
        ("postgresql://flux:s3cr3t@db:port/flux", "the port is not a number"),
    ],
)
def test_a_bad_extra_url_names_its_variable_without_the_password(name, given, reason):
    with pytest.raises(ValueError, match=f"^{name} ") as caught:
        from_env(**{name: given})
    assert reason in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


# -- FLUX_DAO_READ_WAIT / FLUX_DAO_MAX_REPLICA_LAG ------------------------------------------------------------------


def test_read_wait_and_max_lag_defaults():
    settings = from_env()
    assert settings.read_wait == 1.0
    assert settings.max_replica_lag == 5.0


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("2.5", 2.5), (" 0.25 ", 0.25), ("10", 10.0)])
def test_read_wait_is_seconds_from_zero_up(raw, seconds):
    assert from_env(FLUX_DAO_READ_WAIT=raw).read_wait == seconds


@pytest.mark.parametrize("raw", ["-1", "-0.1", "nan", "inf", "soon", "1s"])
def test_a_bad_read_wait_names_the_variable(raw):
    with pytest.raises(ValueError, match=r"^FLUX_DAO_READ_WAIT must be"):
        from_env(FLUX_DAO_READ_WAIT=raw)


def test_read_wait_and_max_lag_are_only_read_with_the_prefix():
    settings = from_env(READ_WAIT="7", MAX_REPLICA_LAG="7")
    assert (settings.read_wait, settings.max_replica_lag) == (1.0, 5.0)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("2", 2.0), ("2s", 2.0), ("0.5", 0.5), ("0.5s", 0.5), ("1m", 60.0), (" 3 s ", 3.0), ("1h", 3600.0)],
)
def test_max_replica_lag_is_a_duration(raw, seconds):
    assert from_env(FLUX_DAO_MAX_REPLICA_LAG=raw).max_replica_lag == seconds


@pytest.mark.parametrize("raw", ["0", "0s", "-1", "500ms", "2 seconds", "fast", "3651d"])
def test_a_bad_max_replica_lag_names_the_variable(raw):
    with pytest.raises(ValueError, match=r"^FLUX_DAO_MAX_REPLICA_LAG must be a duration above zero") as caught:
        from_env(FLUX_DAO_MAX_REPLICA_LAG=raw)
    assert repr(raw) in str(caught.value)


# -- for_migrations() / for_standby() --------------------------------------------------------------------------------


def test_migrations_use_the_direct_url_and_keep_the_rest():
    settings = DatabaseSettings(
        url=STANDBY,  # a pooler in front of the primary, say
        direct_url=DIRECT,
        pool_size=3,
        connect_timeout=2.0,
        prepared_statements=PreparedStatements.OFF,
    )
    migrations = settings.for_migrations()
    assert migrations.url == "postgresql+asyncpg://flux:s3cr3t@primary:5432/flux"
    assert (migrations.pool_size, migrations.connect_timeout) == (3, 2.0)
    assert migrations.prepared_statements is PreparedStatements.OFF


def test_without_a_direct_url_migrations_use_the_url():
    settings = DatabaseSettings(url=PRIMARY, read_url=STANDBY)
    assert settings.for_migrations() is settings
    sqlite = DatabaseSettings()
    assert sqlite.for_migrations() is sqlite


def test_the_standby_settings_point_at_the_read_url_alone():
    settings = DatabaseSettings(
        url=PRIMARY,
        direct_url=DIRECT,
        read_url=STANDBY,
        pool_size=4,
        statement_timeout=2.0,
        prepared_statements=PreparedStatements.OFF,
        read_wait=0.5,
        max_replica_lag=3.0,
    )
    standby = settings.for_standby()
    assert standby is not None
    assert standby.url == "postgresql+asyncpg://flux:s3cr3t@standby:6432/flux"
    assert (standby.direct_url, standby.read_url) == (None, None)
    assert (standby.pool_size, standby.statement_timeout) == (4, 2.0)
    assert standby.prepared_statements is PreparedStatements.OFF
    assert standby.for_standby() is None  # no standby of the standby


def test_without_a_read_url_there_is_no_standby():
    assert DatabaseSettings(url=PRIMARY, direct_url=DIRECT).for_standby() is None
    assert DatabaseSettings().for_standby() is None


# -- consistency tokens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0/0", 0),
        ("0/16B3748", 0x16B3748),
        ("1/0", 1 << 32),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_positions_round_trip(text, position):
    assert parse_position(text) == position
    assert format_position(position) == text
    assert parse_position(format_position(position)) == position


def test_lower_case_and_surrounding_spaces_are_accepted():
    assert parse_position("0/16b3748") == 0x16B3748
    assert parse_position("ffffffff/ffffffff") == 2**64 - 1
    assert parse_position(" 1/aB \t") == (1 << 32) | 0xAB
    assert format_position(parse_position("a/b") or 0) == "A/B"


def test_leading_zeros_are_accepted_up_to_eight_digits():
    assert parse_position("00000001/00000002") == (1 << 32) | 2


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "garbage",
        "0",
        "0/",
        "/0",
        "1/2/3",
        "123456789/0",  # nine hex digits: more than 32 bits
        "0/123456789",
        "0x1/2",
        "-1/2",
        "+1/2",
        "1 /2",
        "G/0",
        "1.0/2",
        "0/16B3748\x00",
    ],
)
def test_anything_else_is_not_a_position(text):
    assert parse_position(text) is None


def test_a_request_keeps_its_furthest_write():
    consistency = Consistency(seen=5)
    assert (consistency.seen, consistency.written) == (5, None)
    consistency.wrote(30)
    consistency.wrote(20)
    assert consistency.written == 30
    consistency.wrote(40)
    assert consistency.written == 40


# -- the standby's lag and status ------------------------------------------------------------------------------------


@pytest.fixture
def standby(monkeypatch: pytest.MonkeyPatch) -> Standby:
    """A Standby that never connected (its pools open only in ``start()``), at a fixed clock."""
    monkeypatch.setattr(standby_module, "monotonic", lambda: NOW)
    settings = DatabaseSettings(
        url="postgresql://flux@127.0.0.1:1/flux", read_url="postgresql://flux@127.0.0.1:1/flux", max_replica_lag=5.0
    )
    standby_settings = settings.for_standby()
    assert standby_settings is not None
    return Standby(Database(settings), standby_settings)


def test_a_new_standby_is_down_until_looked_at(standby):
    assert standby.up is False
    assert standby.lag() is None
    status = standby.status()
    assert status.state == "down"
    assert status.reason == "not looked at yet"
    assert (status.lag_seconds, status.replayed) == (None, None)


def test_a_standby_down_has_no_lag_whatever_it_replayed(standby):
    standby.replayed = 100
    standby._primary_at.extend([(NOW - 30, 200)])
    standby.reason = "it is not a standby (not in recovery)"
    assert standby.lag() is None
    assert standby.status().state == "down"
    assert standby.status().reason == "it is not a standby (not in recovery)"


def test_a_caught_up_standby_has_no_lag(standby):
    standby.up, standby.replayed = True, 0x200
    standby._primary_at.extend([(NOW - 9, 0x100), (NOW - 3, 0x200)])
    assert standby.lag() == 0.0
    status = standby.status()
    assert (status.state, status.lag_seconds, status.replayed, status.reason) == ("up", 0.0, "0/200", None)


def test_a_standby_ahead_of_the_last_sample_has_no_lag(standby):
    standby.up, standby.replayed = True, 0x300  # the primary moved on since its last sample, the standby too
    standby._primary_at.append((NOW - 1, 0x200))
    assert standby.lag() == 0.0


def test_without_primary_samples_an_up_standby_counts_as_caught_up(standby):
    standby.up, standby.replayed = True, 0x100
    assert standby.lag() == 0.0


def test_the_lag_is_the_age_of_the_first_primary_position_past_the_replay(standby):
    standby.up, standby.replayed = True, 0x150
    standby._primary_at.extend([(NOW - 9, 0x100), (NOW - 4, 0x200), (NOW - 1, 0x300)])
    assert standby.lag() == pytest.approx(4.0)
    status = standby.status()
    assert (status.state, status.lag_seconds, status.replayed) == ("up", 4.0, "0/150")


def test_a_standby_further_behind_than_allowed_is_lagging(standby):
    standby.up, standby.replayed = True, 0x100
    standby._primary_at.extend([(NOW - 7.25, 0x101), (NOW - 1, 0x300)])
    status = standby.status()
    assert (status.state, status.lag_seconds, status.replayed) == ("lagging", 7.25, "0/100")


def test_exactly_the_allowed_lag_is_still_up(standby):
    standby.up, standby.replayed = True, 0x100
    standby._primary_at.append((NOW - 5.0, 0x101))
    assert standby.status().state == "up"


# -- where a plain read goes -----------------------------------------------------------------------------------------


def serves(standby: Standby, consistency: Consistency | None) -> bool:
    async def run() -> bool:
        CONSISTENCY.set(consistency)  # this task's context only
        return await standby._serves()

    return asyncio.run(run())


def test_reads_without_a_token_go_to_an_up_standby_within_the_allowed_lag(standby):
    standby.up, standby.replayed = True, 0x100
    assert serves(standby, None)
    assert serves(standby, Consistency())
    standby._primary_at.append((NOW - 6, 0x101))
    assert not serves(standby, None)


def test_a_down_standby_serves_nothing(standby):
    standby.replayed = 0x100
    assert not serves(standby, None)
    assert not serves(standby, Consistency(seen=0x10))


def test_a_read_after_the_requests_own_write_stays_on_the_primary(standby):
    standby.up, standby.replayed = True, 0x100
    consistency = Consistency(seen=0x10)
    consistency.wrote(0x50)
    assert not serves(standby, consistency)


def test_a_token_the_standby_replayed_is_served_there_even_when_it_lags(standby):
    standby.up, standby.replayed = True, 0x100
    standby._primary_at.append((NOW - 60, 0x101))  # far behind, but past what this client saw
    assert serves(standby, Consistency(seen=0x100))
    assert serves(standby, Consistency(seen=0x80))


def test_a_token_ahead_of_the_standby_goes_to_the_primary_without_a_wait(standby):
    standby.up, standby.replayed, standby.read_wait = True, 0x100, 0.0
    assert not serves(standby, Consistency(seen=0x101))
