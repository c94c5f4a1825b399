"""The authority's OpenAPI 3.1 document, served at `/openapi.json`. A test holds it to the routes."""

from __future__ import annotations

from typing import Any

from ccxlic_contract.events import INSTANCE_ID_PATTERN


def _counts(description: str, licenses: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {lic: {"type": "integer", "minimum": 0, "maximum": 1_000_000} for lic in licenses},
        "additionalProperties": False,
    }


COUNTS = _counts("Counts per license", ("standard", "premium", "ivr_ports"))
HELD = _counts(
    "Counts per license: the consumed ones, and the Server and Warm Standby licenses (never consumed, required to "
    "be present)",
    ("standard", "premium", "ivr_ports", "server", "warm_standby"),
)
PEAK = _counts(
    "An interval's peaks per license; the Server and Warm Standby licenses report 0 in use",
    ("standard", "premium", "ivr_ports", "server", "warm_standby"),
)
NAME = {"type": "string", "pattern": INSTANCE_ID_PATTERN}
TIME = {"type": "string", "format": "date-time", "description": "the caller's clock (CCXLIC_AUTHORITY_CALLER_CLOCK)"}
CODE = {"type": "string", "maxLength": 8192}
CERT = {"identity_certificate": CODE, "at": TIME}

# (method, path, side, summary, body properties, required)
OPERATIONS: tuple[tuple[str, str, str, str, dict[str, Any], tuple[str, ...]], ...] = (
    ("get", "/v1/keys", "account", "The authority's public key (Ed25519, PEM): verifies its signed documents", {}, ()),
    (
        "get",
        "/v1/accounts",
        "account",
        "Smart accounts, their virtual accounts, licenses, reservations and instance counts",
        {},
        (),
    ),
    (
        "post",
        "/v1/accounts",
        "account",
        "Create a virtual account in a smart account",
        {"smart_account": NAME, "virtual_account": NAME, "at": TIME},
        ("smart_account", "virtual_account"),
    ),
    (
        "post",
        "/v1/accounts/{account}/licenses/deposit",
        "account",
        "Deposit licenses",
        {"quantities": HELD, "reason": {"type": "string"}},
        ("quantities",),
    ),
    (
        "post",
        "/v1/accounts/{account}/licenses/remove",
        "account",
        "Remove licenses (not those reservations hold)",
        {"quantities": HELD, "reason": {"type": "string"}},
        ("quantities",),
    ),
    (
        "post",
        "/v1/accounts/{account}/licenses/move",
        "account",
        "Move licenses to another virtual account of the same smart account",
        {"quantities": HELD, "to": NAME, "reason": {"type": "string"}},
        ("quantities", "to"),
    ),
    (
        "get",
        "/v1/accounts/{account}/instances",
        "account",
        "Product instances: last contact, last reported usage, in compliance or not",
        {},
        (),
    ),
    ("get", "/v1/accounts/{account}/tokens", "account", "Registration tokens", {}, ()),
    (
        "post",
        "/v1/accounts/{account}/tokens",
        "account",
        "Issue a registration token",
        {
            "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 365},
            "max_uses": {"type": "integer", "minimum": 1},
            "export_controlled": {"type": "boolean"},
            "description": {"type": "string"},
            "at": TIME,
        },
        (),
    ),
    ("post", "/v1/tokens/{token}/revoke", "account", "Revoke a registration token", {"at": TIME}, ()),
    (
        "get",
        "/v1/accounts/{account}/reservations",
        "account",
        "Specific License Reservations held by the virtual account",
        {},
        (),
    ),
    (
        "post",
        "/v1/accounts/{account}/reservations",
        "account",
        "Turn a reservation request code into a signed authorization code",
        {"request_code": CODE, "quantities": COUNTS, "at": TIME},
        ("request_code", "quantities"),
    ),
    (
        "post",
        "/v1/reservations/confirm",
        "account",
        "Enter the confirmation code of an installed reservation",
        {"confirmation_code": CODE, "at": TIME},
        ("confirmation_code",),
    ),
    (
        "post",
        "/v1/reservations/usage",
        "account",
        "Bring a reservation site's usage bundle (`ccxlic reservation usage`): checked whole, its checkpoint "
        "countersigned, its interval peaks recorded against the reservation; answers the intervals over it",
        {
            "bundle": {"type": "object", "description": "a ccxlic-usage-bundle/1, as the site's Smart Agent wrote it"},
            "at": TIME,
        },
        ("bundle",),
    ),
    (
        "post",
        "/v1/reservations/return",
        "account",
        "Enter a return code: the reserved licenses go back to the pool",
        {"return_code": CODE, "at": TIME},
        ("return_code",),
    ),
    (
        "post",
        "/v1/classic/paks",
        "account",
        "Record a classic PAK and its unconverted quantities",
        {"id": NAME, "quantities": COUNTS},
        ("id", "quantities"),
    ),
    ("get", "/v1/classic/paks/{id}", "account", "A PAK: what is still classic and what was converted", {}, ()),
    (
        "post",
        "/v1/classic/paks/{id}/convert",
        "account",
        "PAK-based migration: assign all its unconverted quantities to a virtual account",
        {"virtual_account": NAME},
        ("virtual_account",),
    ),
    (
        "post",
        "/v1/classic/devices",
        "account",
        "Record a classic device (by UUID) and its licenses",
        {"id": NAME, "quantities": COUNTS},
        ("id", "quantities"),
    ),
    ("get", "/v1/classic/devices/{id}", "account", "A device: what is still classic and what was converted", {}, ()),
    (
        "post",
        "/v1/classic/devices/{id}/convert",
        "account",
        "Device-based conversion of some SKUs and quantities; the rest stays classic",
        {"virtual_account": NAME, "quantities": COUNTS},
        ("virtual_account", "quantities"),
    ),
    ("get", "/v1/faults", "account", "The fault on demand now in force", {}, ()),
    (
        "put",
        "/v1/faults",
        "account",
        "Set a fault on the product side: none, unreachable, slow (delay_seconds), refuse (reason), entitlements "
        "(answers without the license type and entitlements); for one instance or all",
        {
            "mode": {"enum": ["none", "unreachable", "slow", "refuse", "entitlements"]},
            "reason": {"type": "string"},
            "delay_seconds": {"type": "number", "minimum": 0, "maximum": 600},
        },
        ("mode",),
    ),
    ("get", "/v1/audit", "account", "Every change: who, when, what (?after=&limit=)", {}, ()),
    (
        "post",
        "/v1/product/register",
        "product",
        "Register with a token: the identity certificate (valid one year), the entitlements, the authorization, the "
        "authority's public key, and, when the virtual account is still out of compliance, since when and what its "
        "licenses must cover",
        {"token": {"type": "string"}, "instance": NAME, "at": TIME},
        ("token", "instance"),
    ),
    (
        "post",
        "/v1/product/renew-registration",
        "product",
        "Renew the registration: a new identity certificate",
        CERT,
        ("identity_certificate",),
    ),
    (
        "post",
        "/v1/product/authorize",
        "product",
        "Renew the authorization (every 30 days); answers the entitlements",
        CERT,
        ("identity_certificate",),
    ),
    (
        "post",
        "/v1/product/report",
        "product",
        "Report usage (interval peaks); answers per license against the virtual account's pool, with the "
        "entitlements, and, out of compliance, since when the account is and what its licenses must cover; with "
        "`checkpoints`, the authority witnesses the instance's licensing logs: it answers `countersigned` (the notes "
        "with its signature added) and `witness_refused` (why the others were not)",
        {
            **CERT,
            "reports": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"interval_start": TIME, "interval_end": TIME, "peak": PEAK},
                },
            },
            "checkpoints": {
                "type": "array",
                "maxItems": 16,
                "items": {"type": "string", "description": "a C2SP signed note: a log checkpoint the instance signed"},
            },
            "log_key": {"type": "string", "description": "the instance's log key: base64 of its Ed25519 public key"},
        },
        ("identity_certificate", "reports"),
    ),
    (
        "post",
        "/v1/product/deregister",
        "product",
        "Deregister: the instance's licenses go back to the pool",
        CERT,
        ("identity_certificate",),
    ),
)


EMAILS = {"type": "array", "maxItems": 50, "items": {"type": "string", "format": "email"}}
SYNC = {"type": "string", "maxLength": 1_000_000}
MORE: tuple[tuple[str, str, str, str, dict[str, Any], tuple[str, ...]], ...] = (
    (
        "get",
        "/v1/accounts/{account}/balances",
        "account",
        "Balances as SSM shows them: per license purchased, in use (reported peaks and reservations, an on-prem's "
        "instances included) and the balance, in deficit or surplus, with the instances behind each number",
        {},
        (),
    ),
    ("get", "/v1/smart-accounts/{smart_account}/notifications", "account", "The notification addresses", {}, ()),
    (
        "put",
        "/v1/smart-accounts/{smart_account}/notifications",
        "account",
        "Set the notification addresses: mailed when an account goes into deficit, an instance goes out of "
        "compliance, misses its authorization or enters enforcement, a reservation or a migration completes",
        {"emails": EMAILS},
        ("emails",),
    ),
    ("get", "/v1/notices", "account", "The notices given (each once), and whom they were mailed to", {}, ()),
    ("get", "/v1/onprems", "account", "central: the SSM On-Prems, their accounts and last sync", {}, ()),
    (
        "post",
        "/v1/onprems",
        "account",
        "central: register an SSM On-Prem (its Ed25519 public key, the virtual accounts it serves)",
        {"onprem": NAME, "public_key_pem": {"type": "string"}, "virtual_accounts": {"type": "array", "items": NAME}},
        ("onprem", "public_key_pem", "virtual_accounts"),
    ),
    (
        "post",
        "/v1/onprem-sync",
        "sync",
        "central: a signed sync request from an on-prem (connected, or a file carried): its usage is recorded; "
        "answers the entitlements, signed. A replayed or foreign request is refused",
        {"sync_request": SYNC, "at": TIME},
        ("sync_request",),
    ),
    ("get", "/v1/sync", "account", "This authority's mode, its last sync request and answer applied", {}, ()),
    ("post", "/v1/sync/request", "account", "onprem: make a signed sync request (the usage)", {"at": TIME}, ()),
    (
        "post",
        "/v1/sync/answer",
        "account",
        "onprem: apply the central's signed answer (accounts and licenses), once",
        {"sync_answer": SYNC, "at": TIME},
        ("sync_answer",),
    ),
)
OPERATIONS = OPERATIONS + MORE

PROBLEM = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def spec() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, side, summary, props, required in OPERATIONS:
        op: dict[str, Any] = {
            "summary": summary,
            "tags": [side],
            "responses": {
                "200": {"description": "done", "content": {"application/json": {"schema": {"type": "object"}}}},
                "4XX": {
                    "description": "refused, with the reason",
                    "content": {"application/json": {"schema": PROBLEM}},
                },
            },
        }
        params = [p[1:-1] for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        if props:
            schema: dict[str, Any] = {"type": "object", "properties": props}
            if required:
                schema["required"] = list(required)
            op["requestBody"] = {"required": bool(required), "content": {"application/json": {"schema": schema}}}
        if side == "account" and path != "/v1/keys":  # the public key is public; a sync request is signed
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {
                "description": "no signed-in caller",
                "content": {"application/json": {"schema": PROBLEM}},
            }
            op["responses"]["403"] = {
                "description": "a viewer tried a change (only an admin changes anything)",
                "content": {"application/json": {"schema": PROBLEM}},
            }
        if side == "product":
            op["responses"]["503"] = {
                "description": "a fault on demand (refuse)",
                "content": {"application/json": {"schema": PROBLEM}},
            }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ccx-licensing licensing authority",
            "version": "1",
            "description": "An SSM-compatible licensing authority: smart and virtual accounts, licenses, registration "
            "tokens, registration, authorization, usage reports, Specific License Reservation, classic-to-smart "
            "migration, balances, account notifications and SSM On-Prem synchronisation. The product side is served "
            "under the vendor's transport URL too (`/Transportgateway/services/DeviceRequestHandler/v1/product/...`). The account side needs an API token (`ccxlic admin token create`): a viewer reads, an admin "
            "changes; every change is audited with the user.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
