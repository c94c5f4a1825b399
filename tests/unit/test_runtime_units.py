"""Runtime pieces that need no broker: settings, logs and the relay's wake-up."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from ccxlic_runtime.db import Relay
from ccxlic_runtime.kafka import Broker
from ccxlic_runtime.logs import JsonFormatter
from ccxlic_runtime.settings import ConfigError, RuntimeSettings, load_settings
from ccxlic_testing.tls import make_ca_and_cert


def test_settings_default_to_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = load_settings(RuntimeSettings)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.database_url.get_secret_value() == "postgresql://postgres@127.0.0.1:5432/ccxlic"


def test_settings_are_frozen_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    s = load_settings(RuntimeSettings)
    assert s.kafka_bootstrap_servers == "broker:29092"
    with pytest.raises(Exception, match="frozen"):
        s.topic_prefix = "x"  # type: ignore[misc]


def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    with pytest.raises(ConfigError, match=r"DATABASE_URL='mysql://nope'"):
        load_settings(RuntimeSettings)
    monkeypatch.setenv("DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("CCXLIC_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="CCXLIC_LOG_LEVEL"):
        load_settings(RuntimeSettings)


def test_secrets_come_from_files_of_ccxlic_secrets_dir_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ccxlic_consumption.settings import ConsumptionSettings

    for name in ("DATABASE_URL", "CCXLIC_CONSUMPTION_DATABASE_URL", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "CCXLIC_CONSUMPTION_DATABASE_URL").write_text("postgresql://ccxlic_consumption:s3cret@pg:5432/ccxlic\n")
    monkeypatch.setenv("CCXLIC_SECRETS_DIR", str(tmp_path))
    s = load_settings(ConsumptionSettings)
    assert s.database_url.get_secret_value() == "postgresql://ccxlic_consumption:s3cret@pg:5432/ccxlic"
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/ccxlic")
    monkeypatch.setenv("CCXLIC_CONSUMPTION_DATABASE_URL", "postgresql://own-from-env/ccxlic")
    assert load_settings(ConsumptionSettings).database_url.get_secret_value() == "postgresql://own-from-env/ccxlic"
    monkeypatch.setenv("CCXLIC_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"CCXLIC_SECRETS_DIR=.*missing.*not a directory"):
        load_settings(ConsumptionSettings)


def test_kafka_security_settings_make_the_clients_options_and_refuse_what_cannot_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(name, raising=False)  # a run over SCRAM+TLS sets them for the session
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    assert Broker.of(load_settings(RuntimeSettings)).options() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    ca, _, _ = make_ca_and_cert(tmp_path, "localhost")
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "pw-123",
        "KAFKA_SSL_CAFILE": str(ca),
    }.items():
        monkeypatch.setenv(name, value)
    broker = Broker.of(load_settings(RuntimeSettings))
    opts = broker.options()
    assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "svc" and opts["sasl_plain_password"] == "pw-123"
    assert opts["ssl_context"].verify_mode.name == "CERT_REQUIRED" and opts["ssl_context"].check_hostname
    assert "pw-123" not in repr(broker) + str(broker) and "SCRAM-SHA-512 as svc" in str(broker)
    monkeypatch.delenv("KAFKA_SASL_PASSWORD")
    with pytest.raises(ConfigError, match="SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        load_settings(RuntimeSettings)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw-123")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    with pytest.raises(ConfigError, match="would send the password in clear") as clear:
        load_settings(RuntimeSettings)
    assert "pw-123" not in str(clear.value)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(ConfigError, match="would not use them"):
        load_settings(RuntimeSettings)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.delenv("KAFKA_SASL_USERNAME")
    monkeypatch.delenv("KAFKA_SASL_PASSWORD")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(ca) + ".missing")
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE"):
        load_settings(RuntimeSettings)


def test_dedup_retention_is_off_by_default_and_takes_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_settings(RuntimeSettings).dedup_retention
    monkeypatch.setenv("CCXLIC_DEDUP_RETENTION", "P30D")
    assert load_settings(RuntimeSettings).dedup_retention == timedelta(days=30)
    monkeypatch.setenv("CCXLIC_DEDUP_RETENTION", "-5")
    with pytest.raises(ConfigError, match=r"CCXLIC_DEDUP_RETENTION='-5': must not be negative"):
        load_settings(RuntimeSettings)


def test_logs_are_one_json_object_per_line() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.instance = "inst-1"
    line = JsonFormatter("svc").format(record)
    entry = json.loads(line)
    assert entry["msg"] == "hello you" and entry["level"] == "warning"
    assert entry["service"] == "svc" and entry["instance"] == "inst-1"


async def test_the_relay_does_not_sleep_through_a_commit_made_while_it_read_the_outbox() -> None:
    """A commit between the relay's read of the outbox (nothing yet) and its wait must wake it: before the fix it
    cleared the signal after the read, lost that commit's wake-up and slept its full second of polling."""
    stop = asyncio.Event()
    db = SimpleNamespace(outbox_ready=asyncio.Event())
    calls = 0

    class Reading(Relay):
        async def once(self) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                db.outbox_ready.set()  # a unit of work committed rows while the outbox was read: nothing seen yet
            else:
                stop.set()  # the second read happened: the rows are published
            return 0

    relay = Reading(db, None)  # type: ignore[arg-type]
    await asyncio.wait_for(relay.run(stop), timeout=0.5)  # the poll would take 1 s: only the wake-up is this fast
    assert calls == 2


def test_the_faces_say_durations_and_the_nearest_deadline_alike() -> None:
    from ccxlic_runtime.client import duration, nearest_deadline

    assert [duration(s) for s in (-5, 59, 2700, 7380, 90061)] == [
        "0 min 0 s",
        "0 min 59 s",
        "45 min 0 s",
        "2 h 3 min",
        "1 d 1 h",
    ]
    assert [duration(s, compact=True) for s in (2700, 7380, 90061)] == ["45m 0s", "2h 3m", "1d 1h"]
    view = {"seconds_to": {"ooc_at": 2700.0, "enforcement_at": None, "authorization_expires_at": 60.0}}
    assert nearest_deadline(view) == ("authorization_expires_at", 60.0)
    assert nearest_deadline({"seconds_to": {"ooc_at": None}}) is None and nearest_deadline(None) is None
    tie = {"seconds_to": {"evaluation_ends_at": 600.0, "enforcement_at": 600.0}}
    assert nearest_deadline(tie) == ("evaluation_ends_at", 600.0)


def test_a_password_in_the_settings_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from ccxlic_alerting.settings import AlertingSettings
    from ccxlic_runtime.settings import ConfigError

    monkeypatch.setenv("DATABASE_URL", "mysql://ops:hunter2@db.example:3306/ccxlic")
    with pytest.raises(ConfigError) as refused:
        load_settings(RuntimeSettings)
    message = str(refused.value)
    assert "hunter2" not in message and "DATABASE_URL='mysql://ops:***@db.example:3306/ccxlic'" in message
    assert "must be a PostgreSQL URL" in message
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops:hunter2@db.example/ccxlic")
    monkeypatch.setenv("CCXLIC_SMTP_PASSWORD", "s3cret-smtp")
    monkeypatch.setenv("CCXLIC_SMTP_TLS", "starttls")
    settings = load_settings(AlertingSettings)
    assert "hunter2" not in repr(settings) and "s3cret-smtp" not in repr(settings)
    assert settings.database_url.get_secret_value().endswith("ops:hunter2@db.example/ccxlic")
    assert settings.smtp_password is not None and settings.smtp_password.get_secret_value() == "s3cret-smtp"
    monkeypatch.setenv("CCXLIC_SMTP_PASSWORD", "")
    assert (
        load_settings(AlertingSettings).smtp_password is None
        or not load_settings(AlertingSettings).smtp_password.get_secret_value()
    )  # type: ignore[union-attr]


def test_min_insync_cannot_exceed_the_replication_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    from ccxlic_runtime.settings import ConfigError

    monkeypatch.setenv("CCXLIC_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("CCXLIC_MIN_INSYNC_REPLICAS", "3")
    with pytest.raises(ConfigError, match=r"CCXLIC_MIN_INSYNC_REPLICAS \(3\) cannot exceed CCXLIC_REPLICATION_FACTOR"):
        load_settings(RuntimeSettings)
    monkeypatch.setenv("CCXLIC_MIN_INSYNC_REPLICAS", "2")
    s = load_settings(RuntimeSettings)
    assert (s.replication_factor, s.min_insync_replicas) == (2, 2)


def test_the_instance_label_is_capped_with_an_overflow_bucket() -> None:
    from ccxlic_runtime.metrics import OVERFLOW, InstanceLabels

    label = InstanceLabels(cap=2)
    assert [label(i) for i in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OVERFLOW, "a", OVERFLOW, "b"]


def test_an_instance_id_with_a_final_newline_is_refused_at_every_http_door() -> None:
    """Python's `$` matches before a final newline; the contract's pattern means the very end (ECMA 262, pydantic)."""
    from ccxlic_runtime.http import BadRequest, check_instance

    assert check_instance("inst-1") == "inst-1"
    for bad in ("inst-1\n", "inst 1", "", "x" * 65):
        with pytest.raises(BadRequest, match="instance id"):
            check_instance(bad)


def test_a_password_in_the_query_string_of_a_database_url_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq takes `?password=` (and `sslpassword=`) as well as the user info's: neither is echoed."""
    from ccxlic_runtime.db import _without
    from ccxlic_runtime.settings import ConfigError, redact_url

    url = "mysql://ops@db.example/ccxlic?sslmode=require&password=hunter%232&sslpassword=k3y"
    assert redact_url(url) == "mysql://ops@db.example/ccxlic?sslmode=require&password=***&sslpassword=***"
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError) as refused:
        load_settings(RuntimeSettings)
    assert "hunter" not in str(refused.value) and "k3y" not in str(refused.value)
    said = _without('FATAL: password "hunter#2" rejected for ops (key k3y)', url)
    assert "hunter" not in said and "k3y" not in said


async def test_the_dedup_pruner_outlives_any_failure_of_a_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Supervised: a round that raises (a bug, not only the database away) is logged, and the next round comes."""
    from ccxlic_runtime import service

    rounds: list[int] = []

    async def prune(db: object, older_than: object) -> int:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise KeyError("a bug in a round")
        return 0

    monkeypatch.setattr(service, "prune_processed", prune)
    task = asyncio.create_task(service._prune_hourly(object(), timedelta(days=1), every=0.01))  # type: ignore[arg-type]
    for _ in range(100):
        if len(rounds) >= 3:
            break
        await asyncio.sleep(0.01)
    assert not task.done() and len(rounds) >= 3
    task.cancel()
