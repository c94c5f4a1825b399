"""`ccxlic kafka ...`: what a deployment with Kafka ACLs needs from its administrator, as the broker's admin user
(KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD; each program's own CCXLIC_<PROGRAM>_KAFKA_SASL_* are not used here)."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from ccxlic_contract import TOPICS
from ccxlic_runtime.kafka import Broker, KafkaUnavailable, ensure_contract_topics, wait_for_kafka
from ccxlic_runtime.kafka_acls import (
    GROUP,
    PREFIXED,
    READ,
    WRITE,
    AclsRefused,
    Grant,
    NoAuthorizer,
    create_acls,
    describe_acls,
    grants,
    users,
)
from ccxlic_runtime.settings import ConfigError, RuntimeSettings, load_settings
from rich.console import Console
from rich.table import Table

from ccxlic_cli.common import fail

app = typer.Typer(help="Kafka topics and ACLs, as the broker's admin user.", no_args_is_help=True)

out = Console()


def _admin() -> RuntimeSettings:
    try:
        return load_settings(RuntimeSettings)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _table(title: str, granted: list[Grant]) -> Table:
    """One row per principal: the program, what it reads (with its group) and what it writes."""
    table = Table(title=title, title_justify="left")
    for column in ("principal", "reads", "writes"):
        table.add_column(column)
    programs = {f"User:{u}": p for p, u in users(os.environ).items()}
    for principal in sorted({g.principal for g in granted}):
        mine = [g for g in granted if g.principal == principal]
        reads = [
            f"group {g.name}{'*' if g.pattern == PREFIXED else ''}" if g.resource == GROUP else g.name
            for g in mine
            if g.operation == READ
        ]
        writes = [g.name for g in mine if g.operation == WRITE]
        who = f"{principal}\n({programs[principal]})" if principal in programs else principal
        table.add_row(who, "\n".join(reads) or "-", "\n".join(writes) or "-")
    return table


async def _setup(settings: RuntimeSettings, wanted: list[Grant]) -> tuple[list[str], bool]:
    """Topics, then grants: the topics created, and whether the broker has an authorizer to hold the grants."""
    broker = Broker.of(settings)
    await wait_for_kafka(broker, timeout=30)
    created = await ensure_contract_topics(settings, TOPICS)
    try:
        await create_acls(broker, wanted)
    except NoAuthorizer:
        return created, False
    return created, True


@app.command("setup")
def setup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the grants without connecting")] = False,
) -> None:
    """Create the contract's topics (CCXLIC_TOPIC_PREFIX, CCXLIC_PARTITIONS, ...) and grant each program's Kafka user
    exactly its own: read what it reads with its consumer group, write what it writes (libs/contract's access.py).
    Idempotent. Users: CCXLIC_<PROGRAM>_KAFKA_SASL_USERNAME, else ccxlic-<program>. On a broker with no authorizer,
    the topics only."""
    settings = _admin()
    wanted = grants(settings.topic_prefix, users(os.environ))
    if dry_run:
        out.print(_table(f"{len(wanted)} grants (not applied)", wanted))
        return
    try:
        created, authorizer = asyncio.run(_setup(settings, wanted))
    except KafkaUnavailable as exc:
        raise fail(str(exc), 1) from None
    except AclsRefused as exc:
        raise fail(f"{exc}; run this as the broker's admin user (KAFKA_SASL_USERNAME)", 1) from None
    if not authorizer:
        out.print(
            f"created {len(created)} topics; this broker has no authorizer (authorizer.class.name), so it holds no "
            "ACLs and every client may read and write every topic",
            highlight=False,
        )
        return
    out.print(_table(f"granted {len(wanted)} ACLs; created {len(created)} topics", wanted))


@app.command("acls")
def acls() -> None:
    """The ACLs the broker holds on topics and groups, by principal."""
    settings = _admin()
    try:
        held = asyncio.run(describe_acls(Broker.of(settings)))
    except AclsRefused as exc:
        raise fail(str(exc), 1) from None
    out.print(_table(f"{len(held)} ACLs", held))
