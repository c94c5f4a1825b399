"""The consumption computer's own settings: faust's data directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from ccxlic_consumption.app import data_dir
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_runtime.settings import ConfigError, load_settings


def test_the_data_directory_is_per_user_under_the_temp_dir_and_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CCXLIC_CONSUMPTION_DATA_DIR", raising=False)
    assert (
        load_settings(ConsumptionSettings).data_dir == Path(tempfile.gettempdir()) / f"ccxlic-consumption-{os.getuid()}"
    )
    monkeypatch.setenv("CCXLIC_CONSUMPTION_DATA_DIR", str(tmp_path / "a" / "b"))
    made = data_dir(load_settings(ConsumptionSettings), "app-1")
    assert Path(made) == tmp_path / "a" / "b" / "app-1" and Path(made).is_dir()


def test_a_data_directory_that_cannot_be_made_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CCXLIC_CONSUMPTION_DATA_DIR", str(tmp_path / "a-file" / "below"))
    with pytest.raises(ConfigError, match=r"CCXLIC_CONSUMPTION_DATA_DIR=.*a-file/below.*cannot create"):
        data_dir(load_settings(ConsumptionSettings), "app-1")
