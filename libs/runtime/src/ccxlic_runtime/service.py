"""Running a service process: JSON logs, the event loop, and graceful shutdown on SIGTERM / Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from ccxlic_runtime.logs import configure_logging

log = logging.getLogger(__name__)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]], *, service: str, log_level: str) -> int:
    """Run `main(stop)` until it returns; SIGTERM or SIGINT sets `stop` so it can finish its work and close."""
    configure_logging(service, log_level)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except Exception as exc:
        log.exception("service stopped on an error")
        print(f"{service}: error: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0
