"""One program per process, as a container runs it: `ccxlic serve SERVICE` and `ccxlic health`.

`serve` writes what it runs to a small file (`$CCXLIC_RUN_DIR/ccxlic-serving.json`, default the temp directory) and
then becomes the service (exec: the container's PID 1 is the service itself, and SIGTERM reaches it), or runs the
ticker in this process. `health` reads that file, so one HEALTHCHECK in the image fits every service: it asks the
service's `/healthz` (or `/readyz`), or checks that the ticker ticked lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from ccxlic_contract.events import ClockTicked

from ccxlic_cli.common import DEFAULT_PORTS, PORT_VARS, SOURCE, CliSettings, err
from ccxlic_cli.common import fail as _fail
from ccxlic_cli.common import producer as _producer
from ccxlic_cli.common import settings as _settings


class Served(StrEnum):
    consumption = "consumption"
    compliance = "compliance"
    alerting = "alerting"
    agent = "agent"
    authority = "authority"
    console = "console"
    ticker = "ticker"


def marker() -> Path:
    return Path(os.environ.get("CCXLIC_RUN_DIR") or tempfile.gettempdir()) / "ccxlic-serving.json"


async def ticker(
    settings: CliSettings, every: float, stop: asyncio.Event, beat: Callable[[], None] | None = None
) -> None:
    """Publish licensing.clock.tick for every instance (`*`) now and then every `every` seconds until `stop`."""
    producer = await _producer(settings)
    try:
        while not stop.is_set():
            await producer.publish(
                ClockTicked(id=str(uuid.uuid4()), source=SOURCE, time=datetime.now(UTC), subject="*")
            )
            if beat is not None:
                beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        await producer.stop()


def _write_marker(what: dict[str, Any]) -> Path:
    path = marker()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(what))
    tmp.replace(path)
    return path


def serve(
    service: Annotated[
        Served, typer.Argument(help="consumption, compliance, alerting, agent, authority, console or ticker")
    ],
    tick_every: Annotated[float, typer.Option(min=1, help="the ticker: seconds between ticks")] = 60.0,
) -> None:
    """Run one service in this process, for a container (the image's entrypoint is ccxlic): the service itself, or
    the ticker that publishes licensing.clock.tick every --tick-every seconds. `ccxlic health` then checks it.

    Examples: ccxlic serve consumption | ccxlic serve ticker --tick-every 60
    """
    settings = _settings()
    name = service.value
    if service is not Served.ticker:
        host = settings.http_host if settings.http_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        port = os.environ.get(PORT_VARS[name], str(DEFAULT_PORTS[name]))
        _write_marker({"service": name, "url": f"http://{host}:{port}"})
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", f"ccxlic_{name}"])  # becomes the service
    path = _write_marker({"service": "ticker", "every": tick_every})
    asyncio.run(_serve_ticker(settings, tick_every, path))


async def _serve_ticker(settings: CliSettings, every: float, path: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    err.print(f"ccxlic serve: ticking every {every:g} s", highlight=False)
    await ticker(settings, every, stop, beat=path.touch)
    err.print("ccxlic serve: stopped", highlight=False)


def health(
    ready: Annotated[
        bool, typer.Option("--ready", help="ask /readyz (every check passes) instead of /healthz")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 3.0,
) -> None:
    """Exit 0 when what `ccxlic serve` runs here is healthy, else 1 with the reason: the service answers /healthz
    (or /readyz with --ready) with 200, or the ticker ticked within three of its periods. The image's HEALTHCHECK.

    Example: ccxlic health --ready
    """
    path = marker()
    try:
        what = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(f"nothing is served here: {path} does not exist (start with `ccxlic serve SERVICE`)", 1) from None
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read {path}: {exc}", 1) from None
    if what.get("service") == "ticker":
        age = time.time() - path.stat().st_mtime
        if age > 3 * float(what["every"]):
            raise _fail(f"the ticker last ticked {age:.0f} s ago (every {float(what['every']):g} s)", 1)
        typer.echo(f"ticker: ticked {age:.0f} s ago")
        return
    url = f"{what['url']}/{'readyz' if ready else 'healthz'}"
    status, body = asyncio.run(_get(url, timeout))
    if status != 200:
        raise _fail(f"{what['service']}: {url} answered {status or 'nothing'}: {body}", 1)
    typer.echo(f"{what['service']}: {url} 200")


async def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(url) as r,
        ):
            return r.status, (await r.text())[:500]
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, str(exc) or type(exc).__name__


def add_commands(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(health)
