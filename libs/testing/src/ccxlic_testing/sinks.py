"""Real receivers for alert notifications, for tests: an SMTP server (aiosmtpd), syslog listeners over UDP and TCP
(RFC 6587 octet counting), and a webhook receiver (aiohttp). `sinks` is a pytest fixture; `start_smtp()` brings the
SMTP server up (tests of a server that is down start it late)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as email_policy
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy))
        return "250 OK"


@dataclass
class Sinks:
    smtp_port: int
    udp_port: int
    tcp_port: int
    webhook_url: str
    mailbox: _Mailbox
    udp: list[str] = field(default_factory=list)
    tcp: list[str] = field(default_factory=list)
    webhook: list[dict[str, Any]] = field(default_factory=list)
    webhook_ids: list[str] = field(default_factory=list)  # each request's X-Ccxlic-Notification-Id
    smtp: Controller | None = None
    smtp_socket: socket.socket | None = None

    def start_smtp(self) -> None:
        """Start the SMTP server on its port, held (bound, refusing connections) since the fixture began."""
        assert self.smtp_socket is not None
        self.smtp = _HeldController(self.mailbox, self.smtp_socket)
        self.smtp.start()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.mailbox.messages]


class _HeldController(Controller):
    """aiosmtpd's controller on a socket bound beforehand: the port was the sink's from the start, so no other
    connection could take it meanwhile (a port picked and bound later can be, by any outgoing connection)."""

    def __init__(self, handler: Any, sock: socket.socket) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1])
        self.held = sock

    def _create_server(self) -> Any:
        self.held.listen()
        return self.loop.create_server(self._factory_invoker, sock=self.held, ssl=self.ssl_context)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, out: list[str]) -> None:
        self.out = out

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.out.append(data.decode())


@pytest_asyncio.fixture
async def sinks() -> AsyncIterator[Sinks]:
    loop = asyncio.get_running_loop()
    held = socket.socket()
    held.bind(("127.0.0.1", 0))  # not listening yet: connections are refused, as with a server that is down
    s = Sinks(held.getsockname()[1], 0, 0, "", _Mailbox(), smtp_socket=held)
    udp_transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(s.udp), local_addr=("127.0.0.1", 0))
    s.udp_port = udp_transport.get_extra_info("sockname")[1]

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # RFC 6587 octet counting: "<len> <message>"
            length = await reader.readuntil(b" ") if not reader.at_eof() else b""
            if not length:
                break
            s.tcp.append((await reader.readexactly(int(length))).decode())
        writer.close()

    async def safe_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await on_tcp(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    tcp_server = await asyncio.start_server(safe_tcp, "127.0.0.1", 0)
    s.tcp_port = tcp_server.sockets[0].getsockname()[1]

    async def hook(request: web.Request) -> web.Response:
        s.webhook.append(await request.json())
        s.webhook_ids.append(request.headers.get("X-Ccxlic-Notification-Id", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    s.webhook_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    try:
        yield s
    finally:
        if s.smtp is not None:
            s.smtp.stop()
        held.close()
        udp_transport.close()
        tcp_server.close()
        await runner.cleanup()
