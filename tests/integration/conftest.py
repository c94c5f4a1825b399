"""Shared by the adapter suites: each runs once on its in-memory store and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources.abc import Traversable
from typing import Any

import pytest
from ccxlic_runtime.db import Database, Transaction, migrate


@pytest.fixture(params=["memory", pytest.param("postgresql", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Database | None:
    """None for the in-memory store; a fresh, migrated schema on the real PostgreSQL otherwise."""
    return None if request.param == "memory" else request.getfixturevalue("db")


async def open_store(
    backend: Database | None, fake: Callable[[], Any], real: Callable[[], Any], migrations: Traversable
) -> tuple[Any, Any]:
    """The store under test and the unit of work its methods take: on PostgreSQL one whose statements each commit
    on their own (the pool serves the same calls as a connection), for the fake none."""
    if backend is None:
        return fake(), None
    await migrate(backend.pool, backend.schema, migrations)
    return real(), Transaction(backend.pool, backend.topic_prefix)  # type: ignore[arg-type]
