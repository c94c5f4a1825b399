"""The read side of a service's licensing log (`audit_log`, written by `Instances` with an `Audit`): an instance's
entries, a page at a time, and its checkpoint (the tree size and RFC 6962 root, unsigned: the Smart Agent signs it
and the licensing authority countersigns it). The same two routes on every service that keeps a log."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from ccxlic_audit.note import Checkpoint

from ccxlic_runtime.db import Database, Transaction
from ccxlic_runtime.http import BadRequest, instance_param, int_param, json_response, problem


def origin(instance: str, service: str) -> str:
    """The name of the log a service keeps for an instance (a checkpoint's first line)."""
    return f"ccxlic/{instance}/{service}"


async def entries(db: Database, instance: str, after: int, limit: int) -> list[str]:
    """Entries `after`+1 on (at most `limit`), each as the canonical JSON that was hashed."""
    rows = await db.fetch(
        "select entry from audit_log where instance = $1 and seq > $2 order by seq limit $3", instance, after, limit
    )
    return [str(r["entry"]) for r in rows]


async def checkpoint(db: Database, instance: str, service: str) -> Checkpoint:
    """The instance's log as it stands: its size and the root over every entry (from its head: no entry is read)."""
    async with db.pool.acquire() as conn:
        head = await Transaction(conn, db.topic_prefix).log_head(instance)
    return Checkpoint(origin(instance, service), head.seq, head.root())


def add_log_routes(app: web.Application, db: Database, service: str) -> None:
    """`GET /v1/instances/{instance}/log?after=&limit=` (entries, oldest first) and `.../log/checkpoint`."""

    async def log_entries(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
            after = int_param(request, "after", 0, 0, 2**62)
            limit = int_param(request, "limit", 1000, 1, 10000)
        except BadRequest as exc:
            return problem(400, str(exc))
        found = await entries(db, instance, after, limit)
        body: dict[str, Any] = {"instance": instance, "origin": origin(instance, service), "entries": found}
        if len(found) == limit:
            body["next"] = f"?after={after + limit}&limit={limit}"
        return json_response(body)

    async def log_checkpoint(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        cp = await checkpoint(db, instance, service)
        return json_response({"origin": cp.origin, "size": cp.size, "text": cp.text()})

    app.router.add_get("/v1/instances/{instance}/log", log_entries)
    app.router.add_get("/v1/instances/{instance}/log/checkpoint", log_checkpoint)
