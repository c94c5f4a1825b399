"""Notification channels: syslog (RFC 5424 over UDP or TCP), email (SMTP: plain, STARTTLS or implicit TLS;
credentials only over TLS) and webhook (the Prometheus Alertmanager webhook format, version "4"). Alerting delivers
through all three; the licensing authority mails its account notifications through the same `Email`. Each `send`
raises on failure; the delivery worker (`delivery.py`) retries with backoff and records the outcome."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import aiohttp
import aiosmtplib

Notification = Mapping[str, Any]
"""What every channel renders (stored as JSON with the delivery): notification_id, kind (raised | repeat | reminder |
resolved), alert_id, alert, title, severity, instance, summary, action, deadline, raised_at, at, details."""

NOTIFICATIONS = uuid.UUID("5f0c8e2a-93d1-4b6e-a7c4-2e9d1f3b8a61")


def notification_id(n: Notification) -> str:
    """The notification's stable id: the same on every attempt, every channel and every replay (a UUID from the
    alert, the kind of notice and its time), for a receiver to deduplicate at-least-once deliveries on."""
    given = n.get("notification_id")
    return str(given) if given else str(uuid.uuid5(NOTIFICATIONS, f"{n['alert_id']}:{n['kind']}:{n['at']}"))


class Channel(Protocol):
    name: str

    async def send(self, n: Notification) -> None: ...


class DeliveryError(RuntimeError):
    """The channel refused or could not be reached; the message says which and why."""


# ---------------------------------------------------------------- syslog

FACILITIES = {"user": 1, "daemon": 3, "auth": 4, **{f"local{i}": 16 + i for i in range(8)}}
SYSLOG_SEVERITY = {"critical": 2, "major": 3, "warning": 4}
NOTICE = 5  # a resolve


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(n: Notification, *, facility: int, hostname: str, app: str = "ccxlic-alerting") -> bytes:
    """One RFC 5424 message: PRI, version 1, timestamp, host, app, procid, msgid, structured data, message."""
    severity = NOTICE if n["kind"] == "resolved" else SYSLOG_SEVERITY.get(str(n["severity"]), 4)
    params = {"notification_id": notification_id(n)}
    params |= {k: str(n[k]) for k in ("alert_id", "alert", "instance", "severity", "kind")}
    if n.get("deadline"):
        params["deadline"] = str(n["deadline"])
    sd = "[ccxlic@32473 " + " ".join(f'{k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    msgid = str(n["kind"]).upper()
    text = f"{n['kind'].upper()} {n['alert']} on {n['instance']}: {n['summary']}"
    return f"<{facility * 8 + severity}>1 {ts} {hostname} {app} - {msgid} {sd} \ufeff{text}".encode()


@dataclass
class Syslog:
    """`udp://host:port`, `tcp://host:port` (octet counting, RFC 6587) or `tls://host:port` (TLS, RFC 5425: the
    same octet-counted frames; the server's certificate must name its host and chain to the system's CAs or
    `ca_file`)."""

    url: str
    facility: int = FACILITIES["local0"]
    timeout: float = 10.0
    name: str = "syslog"
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("udp", "tcp", "tls") or not parts.hostname or not parts.port:
            raise ValueError(
                f"syslog URL must be udp://host:port, tcp://host:port or tls://host:port; got {self.url!r}"
            )
        self.transport, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.hostname = socket.gethostname() or "-"

    async def send(self, n: Notification) -> None:
        message = syslog_message(n, facility=self.facility, hostname=self.hostname)
        try:
            if self.transport == "udp":
                await asyncio.wait_for(asyncio.to_thread(self._udp, message), self.timeout)
            else:
                tls = ssl.create_default_context(cafile=self.ca_file) if self.transport == "tls" else None
                _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port, ssl=tls), self.timeout)
                writer.write(f"{len(message)} ".encode() + message)
                await asyncio.wait_for(writer.drain(), self.timeout)
                writer.close()
                await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise DeliveryError(f"syslog {self.url}: {exc!r}") from None

    def _udp(self, message: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(message, (self.host, self.port))


# ---------------------------------------------------------------- email


def email_message(n: Notification, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """Says what happened, on which instance, what to do and by when."""
    msg = EmailMessage(policy=SMTP.clone(max_line_length=998))  # RFC 5322's limit: subjects stay unfolded
    state = "RESOLVED" if n["kind"] == "resolved" else str(n["severity"]).upper()
    msg["Subject"] = f"[ccx-licensing {state}] {n['title']} on {n['instance']}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Message-ID"] = f"<{notification_id(n)}@ccx-licensing>"  # the same on a resend: mail systems dedupe on it
    msg["X-Ccxlic-Notification-Id"] = notification_id(n)
    lines = [
        f"What happened: {n['summary']}",
        f"Instance:      {n['instance']}",
        f"Alert:         {n['alert']} ({n['severity']}), {n['kind']}",
        f"Raised at:     {n['raised_at']}",
    ]
    if n["kind"] == "resolved":
        lines.append(f"Resolved at:   {n['at']} ({n.get('reason', '')})")
        lines.append("Nothing more to do for this alert.")
    else:
        lines.append(f"What to do:    {n['action']}")
        lines.append(f"By when:       {n['deadline'] or 'as soon as possible (no deadline)'}")
    lines += ["", f"Alert id: {n['alert_id']}", f"Notification id: {notification_id(n)}"]
    if n.get("details"):
        lines.append("Details: " + json.dumps(n["details"], sort_keys=True, default=str))
    msg.set_content("\n".join(lines) + "\n")
    return msg


@dataclass
class Email:
    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    tls: Literal["none", "starttls", "implicit"] = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    name: str = "email"
    ca_file: str | None = None

    async def send(self, n: Notification) -> None:
        recipients = list(n.get("recipients") or self.recipients)  # a notification may name its own (an account's)
        message = email_message(n, self.sender, recipients)
        try:
            await aiosmtplib.send(
                message.as_bytes(),  # flattened with the message's own policy (aiosmtplib would refold the subject)
                sender=self.sender,
                recipients=recipients,
                hostname=self.host,
                port=self.port,
                start_tls=self.tls == "starttls",  # True: refused when the server offers no STARTTLS, never plain
                use_tls=self.tls == "implicit",
                cert_bundle=self.ca_file,
                username=self.username or None,
                password=self.password or None,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"smtp {self.host}:{self.port}: {exc}") from None


# ---------------------------------------------------------------- webhook


def alertmanager_payload(n: Notification, external_url: str, receiver: str = "ccxlic") -> dict[str, Any]:
    """The Alertmanager webhook body (version "4"), one alert per notification."""
    status = "resolved" if n["kind"] == "resolved" else "firing"
    labels = {"alertname": str(n["alert"]), "instance": str(n["instance"]), "severity": str(n["severity"])}
    annotations = {"summary": str(n["summary"]), "description": str(n["action"])}
    if n.get("deadline"):
        annotations["deadline"] = str(n["deadline"])
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": n["raised_at"],
        "endsAt": n["at"] if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"{external_url}/v1/alerts/{n['alert_id']}",
        "fingerprint": str(n["alert_id"]),
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}", instance="{labels["instance"]}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": labels["alertname"], "instance": labels["instance"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [alert],
    }


@dataclass
class Webhook:
    """A webhook receiver. Its URL is a secret (receivers put tokens in the path, the query or the user info): it is
    never in an error, a log or a delivery's `last_error`, only its scheme and host are."""

    url: str = field(repr=False)
    external_url: str
    timeout: float = 10.0
    name: str = "webhook"

    @property
    def shown(self) -> str:
        """What may be said of the URL: its scheme and host."""
        return shown_url(self.url)

    def _scrubbed(self, text: str) -> str:
        """`text` without the URL's secrets (as a client library or a receiver may quote them)."""
        for secret in url_parts(self.url):
            text = text.replace(secret, "…")
        return text

    async def send(self, n: Notification) -> None:
        body = alertmanager_payload(n, self.external_url)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http,
                http.post(self.url, json=body, headers={"X-Ccxlic-Notification-Id": notification_id(n)}) as r,
            ):
                if r.status >= 300:
                    said = self._scrubbed((await r.text())[:200])
                    raise DeliveryError(f"webhook {self.shown}: HTTP {r.status} {said}")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise DeliveryError(f"webhook {self.shown}: {self._scrubbed(repr(exc))}") from None


def shown_url(url: str) -> str:
    """A URL as it may be shown: scheme and host (and port), with the rest (user info, path, query) left out."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{host}{port}/…"


def _port(parts: Any) -> int | None:
    try:
        return int(parts.port) if parts.port else None
    except ValueError:
        return None


def url_parts(url: str) -> list[str]:
    """The secret parts of a URL, longest first: the whole of it, its user info, path and query (and their decoded
    forms)."""
    parts = urlsplit(url)
    found = [url, parts.netloc.rpartition("@")[0] if "@" in parts.netloc else "", parts.query]
    if len(parts.path) > 1:
        found.append(parts.path)
    return sorted({*found, *(unquote(f) for f in found)} - {"", "/"}, key=len, reverse=True)
