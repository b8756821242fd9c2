"""Settings from the environment: one prefix for every variable, and database URLs normalised in one place."""

from dataclasses import replace

import pytest

from flux_dao.config import DatabaseSettings, Settings, env_setting, normalize_database_url, redact_url

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://flux:pw@db:5432/flux", "postgresql+asyncpg://flux:pw@db:5432/flux"),
        ("postgresql://flux@db/flux", "postgresql+asyncpg://flux@db/flux"),
        ("POSTGRESQL://flux@db/flux", "postgresql+asyncpg://flux@db/flux"),
        ("postgresql+asyncpg://flux@db/flux", "postgresql+asyncpg://flux@db/flux"),
        ("sqlite:///./flux_dao.db", "sqlite+aiosqlite:///./flux_dao.db"),
        ("sqlite+aiosqlite:////data/flux.db", "sqlite+aiosqlite:////data/flux.db"),
        ("  postgres://flux@db/flux\n", "postgresql+asyncpg://flux@db/flux"),
    ],
)
def test_database_urls_are_mapped_to_the_async_drivers(given, expected):
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize("scheme", ["mysql", "postgresql+psycopg", "http", "sqlite+pysqlite"])
def test_an_unknown_scheme_lists_the_accepted_ones_without_the_password(scheme):
    with pytest.raises(ValueError, match="unknown scheme") as caught:
        normalize_database_url(f"{scheme}://flux:{SECRET}@db/flux", "FLUX_DAO_DATABASE_URL")
    message = str(caught.value)
    assert message.startswith("FLUX_DAO_DATABASE_URL ")
    assert f"'{scheme}://'" in message
    for accepted in ("postgresql://", "postgres://", "postgresql+asyncpg://", "sqlite://", "sqlite+aiosqlite://"):
        assert accepted in message
    assert SECRET not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (f"flux:{SECRET}@db/flux", "it is not <scheme>://"),
        ("", "it is not <scheme>://"),
        (f"postgresql://flux:{SECRET}@db:port/flux", "the port is not a number"),
        (f"postgresql://flux:{SECRET}@db:70000/flux", "port 70000 is out of range"),
        (f"postgresql://flux:{SECRET}@x@db/flux", "%40"),
    ],
)
def test_a_malformed_url_says_so_without_the_password(given, reason):
    with pytest.raises(ValueError, match="malformed") as caught:
        normalize_database_url(given)
    assert reason in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "@x" not in str(caught.value)  # no half of a password with an unescaped @ either


def test_database_settings_normalise_however_they_are_built():
    settings = DatabaseSettings(url="postgres://flux@db/flux")
    assert settings.url == "postgresql+asyncpg://flux@db/flux"
    assert replace(settings, url="sqlite:///x.db").url == "sqlite+aiosqlite:///x.db"
    with pytest.raises(ValueError, match="unknown scheme"):
        DatabaseSettings(url="mysql://flux@db/flux")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql+asyncpg://flux:{SECRET}@db:5432/flux", "postgresql+asyncpg://flux:***@db:5432/flux"),
        (f"postgresql://flux:{SECRET}@x@db/flux", "postgresql://flux:***@db/flux"),
        ("postgresql+asyncpg://flux@db/flux", "postgresql+asyncpg://flux@db/flux"),
        # a "/" in the password: SQLAlchemy connects with all of it, so all of it is hidden
        (f"postgres://flux:{SECRET}/x@db:5432/flux", "postgres://flux:***@db:5432/flux"),
        (f"postgres://u:se/{SECRET}@h:xx/db", "postgres://u:***@h:xx/db"),  # malformed (the port)
        (
            f"postgresql://flux@db/flux?password={SECRET}&ssl=require",
            "postgresql://flux@db/flux?password=***&ssl=require",
        ),
        ("sqlite+aiosqlite:///./flux_dao.db", "sqlite+aiosqlite:///./flux_dao.db"),
    ],
)
def test_redacted_urls_hide_the_password(url, shown):
    assert redact_url(url) == shown


def test_the_prefixed_variable_wins_over_the_bare_one():
    env = {"FLUX_DAO_DATABASE_URL": "sqlite:///a.db", "DATABASE_URL": "sqlite:///b.db"}
    assert env_setting(env, "DATABASE_URL") == ("FLUX_DAO_DATABASE_URL", "sqlite:///a.db")
    assert env_setting({"DATABASE_URL": "sqlite:///b.db"}, "DATABASE_URL") == ("DATABASE_URL", "sqlite:///b.db")
    assert env_setting({"FLUX_DAO_DATABASE_URL": "", "DATABASE_URL": "x"}, "DATABASE_URL") == ("DATABASE_URL", "x")
    assert env_setting({}, "DATABASE_URL") == ("FLUX_DAO_DATABASE_URL", None)


def test_prefixed_names_are_never_read_bare():
    assert env_setting({"MAX_BODY": "5", "DOCS": "off"}, "FLUX_DAO_MAX_BODY") == ("FLUX_DAO_MAX_BODY", None)
    assert Settings.from_env({"DOCS": "off", "METRICS": "off"}).docs.value == "auto"


def test_every_setting_reads_with_the_prefix():
    settings = Settings.from_env(
        {
            "FLUX_DAO_DATABASE_URL": "postgres://flux@db/flux",
            "DATABASE_URL": "mysql://ignored",
            "FLUX_DAO_SERVICE_API_KEYS": "k1,k2",
            "FLUX_DAO_DB_POOL_SIZE": "3",
            "FLUX_DAO_DB_POOL_TIMEOUT": "2.5",
            "FLUX_DAO_DB_CONNECT_TIMEOUT": "1",
            "FLUX_DAO_DB_POOL_RECYCLE": "60",
            "FLUX_DAO_DB_STATEMENT_TIMEOUT": "0",
            "FLUX_DAO_LOG_LEVEL": "warning",
            "FLUX_DAO_LOG_FORMAT": "text",
        }
    )
    assert settings.database == DatabaseSettings(
        url="postgresql+asyncpg://flux@db/flux",
        pool_size=3,
        pool_timeout=2.5,
        connect_timeout=1.0,
        pool_recycle=60,
        statement_timeout=0.0,
    )
    assert settings.api_keys == ("k1", "k2")
    assert (settings.log_level, settings.log_format) == ("WARNING", "text")


def test_the_bare_names_keep_working():
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://flux@db/flux", "DB_POOL_SIZE": "4", "LOG_LEVEL": "debug"}
    )
    assert settings.database.url == "postgresql+asyncpg://flux@db/flux"
    assert settings.database.pool_size == 4
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "auto"


def test_a_bad_value_names_the_variable_it_came_from():
    with pytest.raises(ValueError, match=r"^FLUX_DAO_DB_POOL_SIZE must be an integer"):
        Settings.from_env({"FLUX_DAO_DB_POOL_SIZE": "ten", "DB_POOL_SIZE": "10"})
    with pytest.raises(ValueError, match=r"^DB_POOL_SIZE must be an integer"):
        Settings.from_env({"DB_POOL_SIZE": "ten"})
    with pytest.raises(ValueError, match=r"^FLUX_DAO_DATABASE_URL has an unknown scheme"):
        Settings.from_env({"FLUX_DAO_DATABASE_URL": "mysql://db/flux"})
