"""The consumption computer's own settings: the event-time skew check."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_runtime.settings import ConfigError, load_settings


def test_the_skew_check_defaults_to_a_day_and_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCXLIC_MAX_EVENT_SKEW", raising=False)
    assert load_settings(ConsumptionSettings).max_event_skew == timedelta(minutes=5)
    monkeypatch.setenv("CCXLIC_MAX_EVENT_SKEW", "off")
    assert load_settings(ConsumptionSettings).max_event_skew is None
    monkeypatch.setenv("CCXLIC_MAX_EVENT_SKEW", "PT2H")
    assert load_settings(ConsumptionSettings).max_event_skew == timedelta(hours=2)


@pytest.mark.parametrize("value", ["-1d", "soon"])
def test_a_bad_skew_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CCXLIC_MAX_EVENT_SKEW", value)
    with pytest.raises(ConfigError, match="CCXLIC_MAX_EVENT_SKEW"):
        load_settings(ConsumptionSettings)
