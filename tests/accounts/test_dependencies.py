"""What counts as an unreachable database or Redis (an outage: 503, never a 500)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from murano.accounts.dependencies import unreachable


class AdapterError(Exception):
    """Like SQLAlchemy's asyncpg adapter `Error`: no DBAPIError, the cause is asyncpg's."""


def _chained(cause: BaseException) -> AdapterError:
    try:
        raise AdapterError("connection was closed in the middle of operation") from cause
    except AdapterError as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
        _chained(asyncpg.exceptions.ConnectionDoesNotExistError("closed")),
        sa_exc.OperationalError("SELECT 1", {}, Exception("down")),
    ],
)
def test_a_lost_connection_is_an_outage(error: BaseException) -> None:
    assert unreachable(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), _chained(ValueError("bad")), sa_exc.IntegrityError("x", {}, Exception())],
)
def test_other_errors_are_not(error: BaseException) -> None:
    assert not unreachable(error)
