"""Data-validity predicates of the desks' outputs (pure): each returns the number of offending rows, 0 when valid.

Blocking asset checks (``assets/checks.py``) wrap them; tests call them directly on hand-made frames.
"""

from __future__ import annotations

import pandas as pd


def inconsistent_plans(valid: pd.DataFrame, max_leverage: float) -> int:
    """Valid setup plans breaking their geometry: SL on the winning side, TP1 not beyond entry, TP2 not beyond TP1,
    leverage outside ``(0, max_leverage]`` or a non-positive size. ``side`` is +1 long / −1 short."""
    s = valid["side"]
    return int(
        (
            ((valid["sl"] - valid["entry"]) * s >= 0)
            | ((valid["tp1"] - valid["entry"]) * s <= 0)
            | ((valid["tp2"] - valid["tp1"]) * s <= 0)
            | (valid["leverage"] <= 0)
            | (valid["leverage"] > max_leverage)
            | ~(valid["qty"] > 0)
        ).sum()
    )


def invalid_signals(sig: pd.DataFrame) -> int:
    """Gated setup signals without a status, closed before their entry (``exit_ts < entry_ts``), or not passed."""
    return int(
        sig["status"].isna().sum()
        + ((sig["exit_ts"] >= 0) & (sig["exit_ts"] < sig["entry_ts"])).sum()
        + (~sig["passed"]).sum()
    )


def invalid_states(daily: pd.DataFrame, states: list[str] | tuple[str, ...]) -> int:
    """Options-desk days with a state outside ``states``, a negative size, or a trade type on a ``no_trade`` day."""
    return int(
        (~daily["state"].isin(states)).sum()
        + (daily["size"] < 0).sum()
        + (daily["trade_type"].notna() & (daily["state"] == "no_trade")).sum()
    )


def calendar_defects(dates: pd.Series) -> tuple[int, bool]:
    """``(duplicate dates, every step is exactly one day)`` of a daily table's ``date`` column (sorted)."""
    d = pd.to_datetime(pd.Series(dates))
    return int(d.duplicated().sum()), bool((d.diff().dropna() == pd.Timedelta(days=1)).all())
