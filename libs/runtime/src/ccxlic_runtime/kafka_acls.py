"""Kafka ACLs from the contract's access table: what each program's principal may do, granted with the broker's
admin API (CreateAcls and DescribeAcls, version 3: Kafka 4 serves no older ones, and aiokafka has none newer).

`grants` is pure: the contract's table, a topic prefix and the users give the bindings. `create_acls` and
`describe_acls` talk to the broker as its admin (a super user). Granting is idempotent: a binding the broker already
holds is granted again without change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int8, Int16, Int32, Schema, TaggedFields
from ccxlic_contract.access import PROGRAMS, Access

from ccxlic_runtime.kafka import Broker, topic_name

# Kafka's codes (org.apache.kafka.common.acl and .resource)
TOPIC, GROUP = 2, 3
ANY, LITERAL, PREFIXED = 1, 3, 4
READ, WRITE, DESCRIBE = 3, 4, 8
ALLOW = 3
_RESOURCES = {TOPIC: "topic", GROUP: "group"}
_OPERATIONS = {READ: "read", WRITE: "write", DESCRIBE: "describe"}


class AclsRefused(RuntimeError):
    """The broker refused to grant or list ACLs (not the admin user, or no authorizer configured); says why."""


class NoAuthorizer(AclsRefused):
    """The broker has no authorizer (`authorizer.class.name`): it holds no ACLs, and every user may do everything."""


SECURITY_DISABLED = 54


@dataclass(frozen=True, order=True, slots=True)
class Grant:
    """One ACL binding: ALLOW `principal` to do `operation` on the resource (a literal name, or every name that
    begins with it: `PREFIXED`), from any host."""

    principal: str  # User:<name>
    resource: int
    name: str
    operation: int
    pattern: int = LITERAL

    def __str__(self) -> str:
        names = f"{self.name}*" if self.pattern == PREFIXED else self.name
        return f"{self.principal} may {_OPERATIONS[self.operation]} {_RESOURCES[self.resource]} {names}"


def users(environ: Mapping[str, str]) -> dict[str, str]:
    """Each program's Kafka user: `CCXLIC_<PROGRAM>_KAFKA_SASL_USERNAME`, else `ccxlic-<program>`."""
    return {p: environ.get(f"CCXLIC_{p.upper()}_KAFKA_SASL_USERNAME") or a.user for p, a in PROGRAMS.items()}


def grants(prefix: str, users: Mapping[str, str], programs: Iterable[Access] = PROGRAMS.values()) -> list[Grant]:
    """What the access table allows, and nothing more: read (and describe) the topics a program reads, with its own
    consumer groups (those whose names begin with `ccxlic-<program>`: a replay's new group too); write (and
    describe) the topics it writes. Topics and groups carry the deployment's prefix."""
    out: set[Grant] = set()
    for a in programs:
        principal = f"User:{users[a.program]}"
        for topic in a.reads:
            out.add(Grant(principal, TOPIC, topic_name(topic, prefix), READ))
        for topic in a.writes:
            out.add(Grant(principal, TOPIC, topic_name(topic, prefix), WRITE))
        for topic in a.topics:
            out.add(Grant(principal, TOPIC, topic_name(topic, prefix), DESCRIBE))
        if a.group is not None:
            out.add(Grant(principal, GROUP, f"{prefix}{a.group}", READ, PREFIXED))
    return sorted(out)


# ------------------------------------------------------------------ the wire (KIP-482 flexible versions)


class _CreateAclsV3Response(Response):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 30
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(("error_code", Int16), ("error_message", CompactString("utf-8")), ("tags", TaggedFields)),
        ),
        ("tags", TaggedFields),
    )


class _CreateAclsV3(RequestStruct):  # type: ignore[misc]  # aiokafka.protocol is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 3
    RESPONSE_TYPE = _CreateAclsV3Response
    SCHEMA = Schema(
        (
            "creations",
            CompactArray(
                ("resource_type", Int8),
                ("resource_name", CompactString("utf-8")),
                ("resource_pattern_type", Int8),
                ("principal", CompactString("utf-8")),
                ("host", CompactString("utf-8")),
                ("operation", Int8),
                ("permission_type", Int8),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


_CreateStruct: TypeAlias = _CreateAclsV3


class _CreateAcls(Request[_CreateStruct]):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 30

    def __init__(self, grants: Sequence[Grant]) -> None:
        self.grants = grants

    def build(self, request_struct_class: type[_CreateStruct]) -> _CreateStruct:
        return request_struct_class(
            [(g.resource, g.name, g.pattern, g.principal, "*", g.operation, ALLOW, {}) for g in self.grants], {}
        )


class _DescribeAclsV3Response(Response):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 29
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", CompactString("utf-8")),
        (
            "resources",
            CompactArray(
                ("resource_type", Int8),
                ("resource_name", CompactString("utf-8")),
                ("pattern_type", Int8),
                (
                    "acls",
                    CompactArray(
                        ("principal", CompactString("utf-8")),
                        ("host", CompactString("utf-8")),
                        ("operation", Int8),
                        ("permission_type", Int8),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _DescribeAclsV3(RequestStruct):  # type: ignore[misc]  # aiokafka.protocol is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 29
    API_VERSION = 3
    RESPONSE_TYPE = _DescribeAclsV3Response
    SCHEMA = Schema(
        ("resource_type_filter", Int8),
        ("resource_name_filter", CompactString("utf-8")),
        ("pattern_type_filter", Int8),
        ("principal_filter", CompactString("utf-8")),
        ("host_filter", CompactString("utf-8")),
        ("operation", Int8),
        ("permission_type", Int8),
        ("tags", TaggedFields),
    )


_DescribeStruct: TypeAlias = _DescribeAclsV3


class _DescribeAcls(Request[_DescribeStruct]):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 29

    def build(self, request_struct_class: type[_DescribeStruct]) -> _DescribeStruct:
        return request_struct_class(ANY, None, ANY, None, None, ANY, ANY, {})


async def _send(broker: Broker, request: Request[Any]) -> Any:
    admin = AIOKafkaAdminClient(**broker.options(), request_timeout_ms=15000)
    await admin.start()
    try:
        return await admin._send_request(request)  # aiokafka's admin client has no ACL calls of its own
    finally:
        await admin.close()


async def create_acls(broker: Broker, wanted: Sequence[Grant]) -> None:
    """Grant them all (as the broker's admin); AclsRefused says which one the broker refused and why."""
    if not wanted:
        return
    answer = await _send(broker, _CreateAcls(wanted))
    for grant, (code, message, _) in zip(wanted, answer.results, strict=True):
        if code == SECURITY_DISABLED:
            raise NoAuthorizer(f"Kafka at {broker} has no authorizer ({message})")
        if code:
            raise AclsRefused(f"Kafka at {broker} refused to grant '{grant}': error {code} ({message})")


async def describe_acls(broker: Broker) -> list[Grant]:
    """Every ALLOW binding of a topic or group (literal or prefixed) the broker holds (as its admin)."""
    answer = await _send(broker, _DescribeAcls())
    if answer.error_code == SECURITY_DISABLED:
        raise NoAuthorizer(f"Kafka at {broker} has no authorizer ({answer.error_message})")
    if answer.error_code:
        raise AclsRefused(
            f"Kafka at {broker} refused to list its ACLs: error {answer.error_code} ({answer.error_message})"
        )
    return sorted(
        Grant(principal, rtype, name, op, pattern)
        for rtype, name, pattern, acls, _ in answer.resources
        if rtype in _RESOURCES and pattern in (LITERAL, PREFIXED)
        for principal, _host, op, permission, _ in acls
        if permission == ALLOW and op in _OPERATIONS
    )
