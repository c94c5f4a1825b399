"""Checkpoints of the licensing log, at each usage report: the shell around the agent's `report` call.

Before the call, the checkpoint of each log kept for the instance (the consumption computer's, compliance's and
alerting's: `GET /v1/instances/{id}/log/checkpoint`) is signed with the instance's own Ed25519 key (made on its first
report, kept in `log_keys`) and goes with the usage report; the licensing authority countersigns what it accepts as a
witness and answers with the notes, which are kept (`checkpoints`) for `ccxlic audit export`. A log that cannot be
read, or a checkpoint the authority refuses, never fails the report: usage reporting is the vendor's, the log is
ours; the reason is logged and the next report tries again.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from ccxlic_audit.bundle import USAGE_FORMAT
from ccxlic_audit.note import NoteError, public_bytes, sign, split
from ccxlic_rules import codes
from ccxlic_runtime.db import Database
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccxlic_agent.caller import Perform
from ccxlic_agent.machine import Call, Outcome

log = logging.getLogger(__name__)


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with http.get(url) as r:
            body = await r.json(content_type=None)
            if r.status != 200 or not isinstance(body, dict):
                raise ValueError(f"{url.split('?')[0]} answered {r.status}")
            return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ValueError(f"{url.split('?')[0]} does not answer: {exc!r}") from None


async def instance_key(db: Database, instance: str) -> Ed25519PrivateKey:
    """The instance's log key: made and kept on first use (two workers racing keep the first)."""
    rows = await db.fetch("select private_pem from log_keys where instance = $1", instance)
    if not rows:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        await db.pool.execute(
            "insert into log_keys(instance, private_pem) values ($1, $2) on conflict do nothing", instance, pem.decode()
        )
        rows = await db.fetch("select private_pem from log_keys where instance = $1", instance)
    return codes.load_key(str(rows[0]["private_pem"]))


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_bytes(key.public_key())).decode()


class Witnessing:
    """`perform` with the log's checkpoints signed into every usage report, and the countersigned ones kept."""

    def __init__(self, db: Database, perform: Perform, logs: Sequence[str], timeout: float = 5.0) -> None:
        self.db = db
        self.inner = perform
        self.logs = [u.rstrip("/") for u in logs]
        self.timeout = timeout

    async def perform(self, instance: str, call: Call) -> Outcome:
        if call.operation != "report" or not self.logs:
            return await self.inner(call)
        key = await instance_key(self.db, instance)
        notes = await self._signed(instance, key)
        if not notes:
            return await self.inner(call)
        outcome = await self.inner(
            call.model_copy(update={"body": {**call.body, "checkpoints": notes, "log_key": public_key_b64(key)}})
        )
        if outcome.ok and isinstance(outcome.answer, dict):
            answer = dict(outcome.answer)
            await self._keep(instance, answer.pop("countersigned", None), answer.pop("witness_refused", None))
            return Outcome(call, True, answer)
        return Outcome(call, outcome.ok, outcome.answer, outcome.reason)

    async def usage_bundle(self, instance: str) -> dict[str, Any]:
        """A reservation site's usage bundle: the consumption computer's log of the instance, from its first entry to
        its checkpoint, and that checkpoint signed with the instance's log key (ValueError: the log cannot be read)."""
        key = await instance_key(self.db, instance)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(self.timeout, 60))) as http:
            for url in self.logs:
                cp = await _get(http, f"{url}/v1/instances/{instance}/log/checkpoint")
                if not str(cp["origin"]).endswith("/consumption"):
                    continue
                size, entries = int(cp["size"]), list[Any]()
                while len(entries) < size:
                    page = await _get(http, f"{url}/v1/instances/{instance}/log?after={len(entries)}&limit=10000")
                    if not page["entries"]:
                        break
                    entries.extend(json.loads(e) for e in page["entries"])
                return {
                    "format": USAGE_FORMAT,
                    "instance": instance,
                    "log_key": public_key_b64(key),
                    "checkpoint": sign(str(cp["text"]), instance, key),
                    "entries": entries[:size],
                }
        raise ValueError("no consumption computer's log is configured (CCXLIC_AGENT_LOG_URLS)")

    async def _signed(self, instance: str, key: Ed25519PrivateKey) -> list[str]:
        notes = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            for url in self.logs:
                try:
                    body = await _get(http, f"{url}/v1/instances/{instance}/log/checkpoint")
                    if int(body["size"]) > 0:
                        notes.append(sign(str(body["text"]), instance, key))
                except (ValueError, KeyError, TypeError, NoteError) as exc:
                    log.warning("a licensing log's checkpoint cannot be read", extra={"url": url, "error": repr(exc)})
        return notes

    async def _keep(self, instance: str, countersigned: Any, refused: Any) -> None:
        if refused:
            log.warning("the licensing authority refused checkpoints", extra={"instance": instance, "why": refused})
        rows = []
        for note in countersigned if isinstance(countersigned, list) else []:
            try:
                text, _ = split(str(note))
                origin, size = text.split("\n")[:2]
                rows.append((instance, origin, int(size), str(note)))
            except (NoteError, ValueError):
                log.warning("a countersigned checkpoint cannot be read", extra={"instance": instance})
        if rows:
            await self.db.pool.executemany(
                "insert into checkpoints(instance, origin, size, note) values ($1, $2, $3, $4)"
                " on conflict (origin, size) do nothing",
                rows,
            )
