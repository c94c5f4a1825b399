"""The forecast's backtest at smoke size (bench/backtest.py, pure): it finds the seasonal-growth scenario's episodes,
catches them a day ahead."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _backtest() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "backtest.py"
    spec = importlib.util.spec_from_file_location("backtest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["backtest"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_backtest_at_smoke_size() -> None:
    bt = _backtest()
    one = bt.backtest(1, 6)
    assert one["episodes"] > 0 and 0 < one["caught_24h"] <= one["episodes"]
    assert one["alerts"] >= one["did_not_happen"] >= 0 and one["median_lead_h"] >= 24
