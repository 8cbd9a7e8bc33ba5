"""What every dashboard page shares: the snapshot, cached reads, data age, filters, tables with CSV download.

Reads go through :func:`read`: a reader of :mod:`warehouse.serving` (or :mod:`warehouse.readers`) run on a cursor of
the one read-only :class:`warehouse.serving.Snapshot` of this process, memoised with ``st.cache_data`` per published
version (a new publish is read at once) for ``dashboard.cache_ttl_s`` seconds. The snapshot is ``TRADER_SERVING``
when set (``trader dashboard --serving``), else ``warehouse.serving_path`` of the configuration.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Callable

import pandas as pd
import streamlit as st

from pipeline.config import TraderConfig, settings
from warehouse.publish import published_at
from warehouse.serving import Snapshot, SnapshotUnavailable

SERVING_ENV = "TRADER_SERVING"
"""Environment variable naming the snapshot to read (a ``serving.duckdb`` or its link); default the configuration's."""


def config() -> TraderConfig:
    return settings()


def serving_path() -> str:
    return os.environ.get(SERVING_ENV) or config().warehouse.serving_path


@st.cache_resource(show_spinner=False)
def _snapshot(path: str) -> Snapshot:
    return Snapshot(path)


def snapshot() -> Snapshot:
    """The process's one :class:`Snapshot` of :func:`serving_path` (one read-only connection per published version)."""
    return _snapshot(serving_path())


def version() -> tuple | None:
    """``(real file, inode, mtime)`` of the published version, or None when nothing is published."""
    try:
        return snapshot().version()
    except SnapshotUnavailable:
        return None


@st.cache_data(ttl=settings().dashboard.cache_ttl_s, show_spinner=False, max_entries=256)
def _cached(key: str, snap_version: tuple, args: tuple, _fn: Callable) -> Any:
    cur, _ = snapshot().cursor()
    try:
        return _fn(cur, *args)
    finally:
        cur.close()


def read(fn: Callable, *args) -> Any:
    """``fn(cursor, *args)`` on the current published version, cached (see the module docstring); None when nothing
    is published (``fn`` itself returns None when its table is not in the snapshot)."""
    v = version()
    if v is None:
        return None
    try:
        return _cached(f"{fn.__module__}.{fn.__qualname__}", v, args, fn)
    except SnapshotUnavailable:
        return None


def no_data(what: str, how: str = "") -> None:
    """The explicit "no data yet" message a panel shows instead of a chart when its table is absent or empty."""
    st.info(f"No data yet: {what}." + (f" {how}" if how else ""), icon=":material/hourglass_empty:")


def data_age() -> None:
    """Where the data comes from and how old it is (publish time of the snapshot and its age now)."""
    v = version()
    if v is None:
        st.error(f"No serving snapshot at {serving_path()}: run `trader run` (or `trader live`) first.")
        return
    at = published_at(v[0])
    age = (dt.datetime.now(dt.UTC) - at).total_seconds() / 3600 if at else None
    st.caption(
        f"Snapshot published **{at:%Y-%m-%d %H:%M} UTC** ({age_text(age)} ago) · `{os.path.basename(os.path.dirname(v[0]))}`"
        if at
        else f"Snapshot `{v[0]}`"
    )


def age_text(hours: float | None) -> str:
    if hours is None:
        return "n/a"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:,.0f} days"


def table(df: pd.DataFrame, name: str, key: str | None = None, height: int | None = None) -> None:
    """``df`` as an interactive table with a "Download CSV" button (file ``<name>.csv``, every row and column)."""
    st.dataframe(df, hide_index=True, **({"height": height} if height else {}))
    st.download_button(
        "Download CSV",
        df.to_csv(index=False).encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"csv-{key or name}",
        icon=":material/download:",
        on_click="ignore",
    )


def ms(ts) -> pd.Timestamp:
    """Epoch ms → naive UTC timestamp (the warehouse's convention)."""
    return pd.to_datetime(ts, unit="ms")


def to_ms(t) -> int:
    return int(pd.Timestamp(t).value // 10**6)


def parse_json(v) -> Any:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    return json.loads(v) if isinstance(v, str) else v


def pick_series(
    series: pd.DataFrame, key: str, timeframes: list[str] | None = None, default: tuple[str, str] | None = None
) -> tuple[str, str] | None:
    """Sidebar filters symbol and timeframe over the candle series of ``series`` (:func:`warehouse.serving.series_frame`),
    limited to ``timeframes`` when given, preselecting ``default`` (else BTC/USDT, else the first); None when no series
    qualifies."""
    s = series if timeframes is None else series[series["timeframe"].isin(timeframes)]
    if s.empty:
        return None
    symbols = sorted(s["symbol"].unique())
    want_sym = default[0] if default and default[0] in symbols else "BTC/USDT"
    sym = st.sidebar.selectbox(
        "Symbol", symbols, index=symbols.index(want_sym) if want_sym in symbols else 0, key=f"{key}-symbol"
    )
    tfs = [t for t in (timeframes or s["timeframe"].unique()) if t in set(s.loc[s["symbol"] == sym, "timeframe"])]
    want_tf = default[1] if default and default[1] in tfs else tfs[0]
    tf = st.sidebar.selectbox("Timeframe", tfs, index=tfs.index(want_tf), key=f"{key}-timeframe")
    return sym, tf


def pick_dates(first, last, key: str, default: tuple) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Sidebar date range filter between ``first`` and ``last`` (inclusive UTC days), preset to ``default`` (two
    dates, clipped to the span). Returns ``[start, end)`` as naive UTC timestamps (end = the day after the last one)."""
    lo, hi = pd.Timestamp(first).date(), pd.Timestamp(last).date()
    a0, b0 = (min(max(pd.Timestamp(d).date(), lo), hi) for d in default)
    got = st.sidebar.date_input("Date range (UTC)", (a0, b0), min_value=lo, max_value=hi, key=f"{key}-dates")
    a, b = (got[0], got[-1]) if isinstance(got, (tuple, list)) and got else (a0, b0)
    return pd.Timestamp(a), pd.Timestamp(b) + pd.Timedelta(days=1)


def last_days(last, days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The ``days`` days ending at ``last`` (a default of :func:`pick_dates`)."""
    return pd.Timestamp(last) - pd.Timedelta(days=days), pd.Timestamp(last)


def pct(v, digits: int = 1) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v * 100:+.{digits}f} %"


def num(v, digits: int = 2) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v:,.{digits}f}"


#: the core metrics shown for a backtest, in order: (key of ``backtest.runs.metrics``, label, formatter)
CORE_METRICS: list[tuple[str, str, Callable]] = [
    ("total_return", "Total return", pct),
    ("annual_return", "Annual return", pct),
    ("sharpe", "Sharpe", num),
    ("max_drawdown", "Max drawdown", pct),
    ("n_trades", "Trades", lambda v: num(v, 0)),
    ("win_rate", "Win rate", lambda v: "n/a" if v is None or pd.isna(v) else f"{v * 100:.1f} %"),
    ("profit_factor", "Profit factor", num),
    ("psr", "PSR", num),
    ("dsr", "DSR", num),
]


def metrics_table(runs: dict[str, dict | None]) -> pd.DataFrame:
    """The stored metrics of each named run (``backtest.runs.metrics`` / ``benchmark``, computed by the one
    :func:`pipeline.core.metrics.metrics`) side by side: a row per metric of :data:`CORE_METRICS` (raw values)."""
    rows = []
    for k, label, _ in CORE_METRICS:
        rows.append({"metric": label, **{name: (m or {}).get(k) for name, m in runs.items()}})
    return pd.DataFrame(rows)


def metric_cards(
    m: dict, keys: tuple[str, ...] = ("total_return", "annual_return", "sharpe", "max_drawdown"), per_row: int = 4
) -> None:
    """One ``st.metric`` per key of :data:`CORE_METRICS` in ``keys``, formatted from the stored value, ``per_row`` to
    a row."""
    spec = {k: (label, f) for k, label, f in CORE_METRICS}
    for i in range(0, len(keys), per_row):
        cols = st.columns(per_row)
        for c, k in zip(cols, keys[i : i + per_row]):
            label, f = spec[k]
            c.metric(label, f(m.get(k)))


def benchmark_of(bench: dict | None) -> dict | None:
    """The buy-and-hold metrics of a ``backtest.runs.benchmark`` (the candle desks store them whole; the options desk
    under ``buy_and_hold`` beside its other benchmarks)."""
    if not bench:
        return None
    return bench.get("buy_and_hold", bench) if isinstance(bench.get("buy_and_hold"), dict) else bench


def run_of(backtests: pd.DataFrame | None, desk: str, strategy: str | None = None) -> dict | None:
    """The newest ``backtest.runs`` row of ``desk`` (and ``strategy``), JSON columns parsed; None when absent."""
    if backtests is None or backtests.empty:
        return None
    b = backtests[(backtests["desk"] == desk) & ((backtests["strategy"] == strategy) if strategy else True)]
    if b.empty:
        return None
    r = b.iloc[0].to_dict()
    for c in ("universe", "params", "costs", "metrics", "benchmark", "per_symbol"):
        r[c] = parse_json(r.get(c))
    return r


def live_every() -> float:
    """Seconds between refreshes of a live panel (``dashboard.refresh_s``)."""
    return config().dashboard.refresh_s
