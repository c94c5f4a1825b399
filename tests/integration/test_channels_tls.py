"""The notification channels over TLS, against real servers with a certificate from a CA made here: email by
implicit TLS (SMTPS), STARTTLS with a login, and a server that offers no STARTTLS, to which nothing is sent in
clear (the settings refuse credentials without TLS); syslog over TLS (RFC 5425)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_runtime.channels import DeliveryError, Email, Syslog
from ccxlic_runtime.settings import ConfigError, load_settings
from ccxlic_testing.plugin import free_port
from ccxlic_testing.tls import make_ca_and_cert

pytestmark = pytest.mark.integration

NOTICE = {
    "kind": "raised",
    "alert_id": "a-1",
    "alert": "OutOfCompliance",
    "title": "OOC: system in Out of Compliance",
    "severity": "critical",
    "instance": "cc-east",
    "summary": "cc-east is Out of Compliance",
    "action": "purchase licenses",
    "deadline": None,
    "raised_at": "2026-03-02T10:00:00Z",
    "at": "2026-03-02T10:00:00Z",
}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        from email import message_from_bytes

        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _server(inbox: Inbox, **kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    ca, cert, key = make_ca_and_cert(tmp_path, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return ca, context


async def test_implicit_tls_delivers(tls: tuple[Path, ssl.SSLContext]) -> None:
    ca, context = tls
    inbox = Inbox()
    for port in _server(inbox, ssl_context=context, server_hostname="localhost"):
        email = Email("localhost", port, "ccx@example.com", ["noc@example.com"], "implicit", ca_file=str(ca), timeout=5)
        await email.send(NOTICE)
    assert [str(m["Subject"]) for m in inbox.messages] == [
        "[ccx-licensing CRITICAL] OOC: system in Out of Compliance on cc-east"
    ]


async def test_starttls_with_a_login_and_a_server_without_starttls_gets_nothing(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    ca, context = tls
    inbox = Inbox()

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ccx", b"s3cret")
        if ok:
            inbox.logins.append(data.login.decode())
        return AuthResult(success=ok)

    for port in _server(
        inbox,
        server_hostname="localhost",
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    ):
        email = Email(
            "localhost", port, "ccx@example.com", ["noc@example.com"], "starttls", "ccx", "s3cret", 5, ca_file=str(ca)
        )
        await email.send(NOTICE)
    assert len(inbox.messages) == 1 and inbox.logins == ["ccx"]
    plain = Inbox()
    for port in _server(plain, server_hostname="localhost"):  # offers no STARTTLS
        email = Email("localhost", port, "ccx@example.com", ["noc@example.com"], "starttls", "ccx", "s3cret", 5)
        with pytest.raises(DeliveryError, match=r"(?i)starttls"):
            await email.send(NOTICE)
    assert plain.messages == []


def test_credentials_without_tls_are_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCXLIC_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("CCXLIC_ALERT_EMAILS", "noc@example.com")
    monkeypatch.setenv("CCXLIC_SMTP_USERNAME", "ccx")
    monkeypatch.setenv("CCXLIC_SMTP_PASSWORD", "s3cret")
    with pytest.raises(ConfigError, match="a password is never sent in clear; set CCXLIC_SMTP_TLS=starttls"):
        load_settings(AlertingSettings)
    monkeypatch.setenv("CCXLIC_SMTP_TLS", "implicit")
    monkeypatch.setenv("CCXLIC_SMTP_PORT", "465")
    [email] = [c for c in load_settings(AlertingSettings).channels() if isinstance(c, Email)]
    assert (email.tls, email.port, email.username) == ("implicit", 465, "ccx")
    monkeypatch.setenv("CCXLIC_SMTP_TLS", "ssl")
    with pytest.raises(ConfigError, match="CCXLIC_SMTP_TLS"):
        load_settings(AlertingSettings)


async def test_syslog_over_tls_rfc_5425(tls: tuple[Path, ssl.SSLContext]) -> None:
    ca, context = tls
    got: list[str] = []

    async def on_frame(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = await reader.readuntil(b" ")
        got.append((await reader.readexactly(int(length))).decode())
        writer.close()

    server = await asyncio.start_server(on_frame, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        await Syslog(f"tls://localhost:{port}", ca_file=str(ca), timeout=5).send(NOTICE)
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.05)
        assert len(got) == 1 and got[0].startswith("<130>1 ") and "OutOfCompliance on cc-east" in got[0]
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):  # not our CA: nothing is sent
            await Syslog(f"tls://localhost:{port}", timeout=5).send(NOTICE)
        assert len(got) == 1
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises(ValueError, match="udp://host:port, tcp://host:port or tls://host:port"):
        Syslog("ssl://localhost:6514")
