"""Health rules (pure, issue 16): which inputs and signal tables are stale, and which closed-candle sensor lags.

Times are epoch ms UTC. A candle's age runs from its close (open ``ts`` + timeframe), a daily row's from the end of
its UTC day (D+1 00:00), the setup scan's from the wall-clock time it last ran (``ops.asset_inputs.updated_at``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.timeframes import TIMEFRAME_MS

_H = 3_600_000
_DAY = 24 * _H


@dataclass(frozen=True)
class Freshness:
    """One judged input: ``source`` (message text, e.g. ``candles BTC/USDT 15m``), ``asset`` (the table whose check
    reports it), ``newest`` (epoch ms when its newest row ends; None = empty), ``age_hours`` (None when empty) and the
    bound ``max_age_hours``."""

    source: str
    asset: str
    newest: int | None
    age_hours: float | None
    max_age_hours: float

    @property
    def stale(self) -> bool:
        return self.age_hours is None or self.age_hours > self.max_age_hours


def _day_end_ms(d) -> int | None:
    """A ``datetime.date`` (or pandas Timestamp) → epoch ms of the end of that UTC day."""
    if d is None:
        return None
    import pandas as pd

    t = pd.Timestamp(d)
    if t is pd.NaT:
        return None
    return int(t.normalize().value // 10**6) + _DAY


def judge(
    fresh: dict[str, dict],
    now_ms: int,
    *,
    candle_timeframes: list[str],
    max_candle_lag_bars: int,
    max_onchain_age_hours: float,
    max_sentiment_age_hours: float,
    max_signal_age_hours: float,
    scan_ran_ms: int | None,
    max_scan_age_hours: float,
) -> list[Freshness]:
    """Every judged input at ``now_ms``: one row per candle series of ``candle_timeframes`` (bound
    ``max_candle_lag_bars`` × its timeframe), ``onchain``, ``sentiment``, the options desk's ``signals``
    (``signals.options_daily``) and the setup scan (``signals.setups``: ``scan_ran_ms``, skipped when None and the
    table is absent). ``fresh`` is :func:`warehouse.serving.freshness` of the warehouse; absent tables are skipped.
    """
    out: list[Freshness] = []

    def add(source: str, asset: str, newest: int | None, bound_h: float) -> None:
        age = None if newest is None else round((now_ms - newest) / _H, 2)
        out.append(Freshness(source, asset, newest, age, bound_h))

    for s in fresh.get("candles", {}).get("series", []):
        tf = s["timeframe"]
        if tf in candle_timeframes and tf in TIMEFRAME_MS:
            step = TIMEFRAME_MS[tf]
            add(
                f"candles {s['symbol']} {tf}", "market.ohlcv", int(s["last_ts"]) + step, max_candle_lag_bars * step / _H
            )
    for name, asset, bound in (
        ("onchain", "market.onchain_daily", max_onchain_age_hours),
        ("sentiment", "market.sentiment_daily", max_sentiment_age_hours),
        ("signals", "signals.options_daily", max_signal_age_hours),
    ):
        if name in fresh:
            add(name if name != "signals" else "options signals", asset, _day_end_ms(fresh[name]["last_date"]), bound)
    if "setups" in fresh or scan_ran_ms is not None:
        add("setup scan", "signals.setups", scan_ran_ms, max_scan_age_hours)
    return out


def lagging(cursor: dict[str, int], timeframe: str, now_ms: int, factor: float) -> list[tuple[str, int, float]]:
    """Symbols of a ``closed_candles_<timeframe>`` sensor cursor (``{symbol: open ts of the newest candle
    requested}``) whose newest requested candle closed more than ``factor`` × timeframe before ``now_ms`` (at least one
    closed candle is overdue): ``[(symbol, close ms, lag hours)]``, sorted by symbol."""
    step = TIMEFRAME_MS[timeframe]
    out = []
    for sym in sorted(cursor):
        close = int(cursor[sym]) + step
        if now_ms - close > factor * step:
            out.append((sym, close, round((now_ms - close) / _H, 3)))
    return out


def episodes(rows: list[Freshness]) -> list[Freshness]:
    """The stale rows as alerts: candle series grouped per timeframe into one row ``candles <tf>`` carrying the
    stalest series' newest close and age, every other stale row as it is. One message per timeframe instead of one per
    symbol: ten symbols going stale together (an exchange outage) is one event; the ``ops/health`` metadata lists
    every series."""
    out: list[Freshness] = []
    candles: dict[str, Freshness] = {}
    for r in rows:
        if not r.stale:
            continue
        if r.source.startswith("candles "):
            tf = r.source.rsplit(" ", 1)[-1]
            prev = candles.get(tf)
            if prev is None or (r.newest or 0) < (prev.newest or 0):
                candles[tf] = r
        else:
            out.append(r)
    grouped = [
        Freshness(f"candles {tf}", r.asset, r.newest, r.age_hours, r.max_age_hours)
        for tf, r in sorted(candles.items(), key=lambda x: TIMEFRAME_MS.get(x[0], 0))
    ]
    return grouped + out
