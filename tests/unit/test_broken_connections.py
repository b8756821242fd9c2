"""Which driver errors retire a connection (503, reads run again) and which may even repeat a write."""

import asyncpg
import asyncpg.exceptions
import pytest

from flux_dao.store.db import connection_broken, statement_unsent

BROKEN = [
    asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server process"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.InterfaceError("connection is closed"),
    ConnectionResetError(104, "Connection reset by peer"),
]
NOT_BROKEN = [
    TimeoutError(),  # a slow statement: handled apart (terminated, but not a sign the others are gone)
    asyncpg.exceptions.DataError("invalid input for query argument $1"),
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("exc", BROKEN, ids=lambda e: type(e).__name__)
def test_errors_that_retire_the_connection(exc: BaseException) -> None:
    assert connection_broken(exc)


@pytest.mark.parametrize("exc", NOT_BROKEN, ids=lambda e: type(e).__name__)
def test_errors_that_leave_the_connection_usable(exc: BaseException) -> None:
    assert not connection_broken(exc)


def test_only_errors_raised_before_sending_let_a_write_run_again() -> None:
    assert statement_unsent(BROKEN[0])  # the state check comes before the statement is written
    assert statement_unsent(asyncpg.InterfaceError("connection is closed"))
    # the server may have committed before it ended the session, or before the link broke
    assert not any(statement_unsent(exc) for exc in BROKEN[1:4])
    assert not statement_unsent(ConnectionResetError(104, "Connection reset by peer"))
