"""Runtime pieces that need no broker: settings and logs."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from ccxlic_runtime.logs import JsonFormatter
from ccxlic_runtime.settings import ConfigError, RuntimeSettings, load_settings


def test_settings_default_to_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = load_settings(RuntimeSettings)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/ccxlic"


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
