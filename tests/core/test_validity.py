"""Validity predicates behind the blocking checks, on hand-made rows (each rule breaks exactly one row)."""

import pandas as pd

from pipeline.core.backtest import reconcile
from pipeline.core.validity import calendar_defects, inconsistent_plans, invalid_signals, invalid_states


def test_inconsistent_plans_counts_each_broken_rule():
    ok = {"side": 1, "entry": 100.0, "sl": 95.0, "tp1": 105.0, "tp2": 110.0, "leverage": 5.0, "qty": 1.0}
    rows = [
        ok,
        {**ok, "sl": 101.0},
        {**ok, "tp1": 99.0},
        {**ok, "tp2": 104.0},
        {**ok, "leverage": 0.0},
        {**ok, "leverage": 11.0},
        {**ok, "qty": 0.0},
        {"side": -1, "entry": 100.0, "sl": 105.0, "tp1": 95.0, "tp2": 90.0, "leverage": 2.0, "qty": 1.0},
    ]
    assert inconsistent_plans(pd.DataFrame(rows), max_leverage=10) == 6


def test_invalid_signals_and_states():
    sig = pd.DataFrame(
        {
            "status": ["TP", None, "SL", "NEW"],
            "entry_ts": [1, 1, 5, -1],
            "exit_ts": [2, 2, 4, -1],
            "passed": [True, True, True, False],
        }
    )
    assert invalid_signals(sig) == 3  # no status, exit before entry, not passed
    daily = pd.DataFrame(
        {
            "state": ["no_trade", "bogus", "no_trade", "strong_bullish"],
            "size": [0.0, 0.0, 0.0, -1.0],
            "trade_type": [None, None, "LONG_CALL", "LONG_CALL"],
        }
    )
    assert invalid_states(daily, ("no_trade", "strong_bullish")) == 3


def test_calendar_and_reconcile():
    assert calendar_defects(pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]))) == (0, True)
    assert calendar_defects(pd.Series(pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-03"]))) == (1, False)
    trades = pd.DataFrame({"pnl": [10.0, -4.0], "entry_ts": [1, 5], "exit_ts": [3, 4]})
    err, bad = reconcile(106.0, 100.0, trades)
    assert err == 0.0 and bad == 1
    assert reconcile(100.0, 100.0, None) == (0.0, 0)
