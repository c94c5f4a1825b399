"""`make` from any clone, as a new user does it: `git clone` into a private home directory (mode 0700) and `make up`,
twice (idempotent), then `make down`. As root, PostgreSQL's cluster cannot live in the clone (the postgres user
cannot enter it) and goes to the fallback directory; the second `make up` must find it running there, not report
the project's own PostgreSQL as a port taken. The clone's stack runs next to the session's, on ports of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from ccxlic_testing.plugin import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_make_up_from_a_fresh_clone_in_a_private_home_twice_then_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    clone = home / "ccx-licensing"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    fallback = Path(tempfile.mkdtemp(prefix="ccxlic-clone-test-", dir="/var/tmp"))
    fallback.chmod(0o755)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_URL", "CCXLIC_", "PG_"))}
    env = {
        **keep,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_PROXIED_PORT": str(free_port()),
        "KAFKA_PROXY_PORT": str(free_port()),
        "PG_PORT": str(free_port()),
        "CCXLIC_PG_FALLBACK_DIR": str(fallback / "pg"),
    }

    def make(*targets: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-C", str(clone), *targets], env=env, capture_output=True, text=True, timeout=600
        )

    try:
        first = make("up")
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        if os.geteuid() == 0:
            assert f"keeping the cluster in {fallback / 'pg'}" in first.stdout
        assert (clone / ".stack" / "pg.env").exists() and (clone / ".stack" / "kafka" / "client.env").exists()
        second = make("up")
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        assert "kafka already running" in second.stdout and "postgresql already running" in second.stdout
        down = make("down")
        assert down.returncode == 0 and "stopping kafka" in down.stdout and "stopping postgresql" in down.stdout
        assert make("status").stdout.count("stopped") == 2
    finally:
        make("down")
        shutil.rmtree(fallback, ignore_errors=True)
