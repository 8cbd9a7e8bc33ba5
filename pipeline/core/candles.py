"""OHLCV candles: validation, gap detection, forming-candle removal and resampling (pure).

Frames use the columns of ``OHLCV_COLUMNS`` (``ts`` = open time, epoch ms UTC, int64; prices in
quote currency, float64; ``volume`` in base asset) plus the optional Binance columns of
``EXTRA_COLUMNS`` (``quote_volume`` in quote currency, ``trades`` count, ``taker_buy_base``,
``taker_buy_quote``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from pipeline.core.timeframes import timeframe_ms

OHLCV_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
EXTRA_COLUMNS = ["quote_volume", "trades", "taker_buy_base", "taker_buy_quote"]
# plausible epoch-ms window: 2009-01-01 .. 2100-01-01 (catches seconds/microseconds mix-ups)
_MIN_TS_MS, _MAX_TS_MS = 1_230_768_000_000, 4_102_444_800_000


class CandleValidationError(ValueError):
    """A candle file or response breaks a rule. Carries where (``source``, ``row``) and which ``rule``.

    ``row`` is the 1-based data row (the header is row 0), so it matches a text editor's line number
    minus one for CSV files.
    """

    def __init__(self, source: str, row: int | None, rule: str, detail: str):
        self.source, self.row, self.rule, self.detail = source, row, rule, detail
        where = f"{source}" + (f", row {row}" if row is not None else "")
        super().__init__(f"{where}: rule '{rule}' violated: {detail}")


def validate_ohlcv(df: pd.DataFrame, source: str, timeframe: str | None = None) -> pd.DataFrame:
    """Check a raw candle frame and return it typed (``ts`` int64, prices/volumes float64).

    Rules, in order: required columns present; numeric types; no NaN in OHLCV; every value finite
    (``inf``/``-inf`` rejected, rule ``finite``, issue 13 item 7); ``ts`` in epoch
    **milliseconds** (not seconds/µs); prices > 0, volume >= 0; ``low <= open, close <= high``;
    no duplicate ``ts``; strictly increasing ``ts``; ``ts`` aligned to the timeframe grid.

    Raises:
        CandleValidationError: naming ``source``, the first offending row and the rule.
    """
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        raise CandleValidationError(
            source, None, "required_columns", f"missing columns {missing}; have {list(df.columns)}"
        )
    out = pd.DataFrame(index=df.index)
    for c in OHLCV_COLUMNS + [c for c in EXTRA_COLUMNS if c in df.columns]:
        col = pd.to_numeric(df[c], errors="coerce")
        bad = col.isna() & df[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CandleValidationError(
                source, i + 1, "numeric", f"column {c!r} value {df[c].iloc[i]!r} is not a number"
            )
        out[c] = col.astype("float64")
    nan = out[OHLCV_COLUMNS].isna().any(axis=1).to_numpy()
    if nan.any():
        i = int(np.flatnonzero(nan)[0])
        cols = [c for c in OHLCV_COLUMNS if pd.isna(out[c].iloc[i])]
        raise CandleValidationError(source, i + 1, "no_nan", f"empty value in {cols}")
    vals = out.to_numpy()
    inf = np.isinf(vals).any(axis=1)  # NaN in an optional extra column is allowed (absent value), ±inf never
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        cols = [c for c in out.columns if np.isinf(out[c].iloc[i])]
        raise CandleValidationError(
            source, i + 1, "finite", f"non-finite value in {cols}: {[out[c].iloc[i] for c in cols]}"
        )
    ts = out["ts"].to_numpy()
    if (ts != np.floor(ts)).any():
        i = int(np.flatnonzero(ts != np.floor(ts))[0])
        raise CandleValidationError(source, i + 1, "timestamp_unit", f"ts {ts[i]!r} is not an integer epoch-ms value")
    bad_unit = (ts < _MIN_TS_MS) | (ts > _MAX_TS_MS)
    if bad_unit.any():
        i = int(np.flatnonzero(bad_unit)[0])
        guess = "seconds" if ts[i] < _MIN_TS_MS / 100 else ("microseconds" if ts[i] > _MAX_TS_MS else "out of range")
        raise CandleValidationError(
            source, i + 1, "timestamp_unit", f"ts {int(ts[i])} is not epoch milliseconds (looks like {guess})"
        )
    out["ts"] = ts.astype("int64")
    o, h, l, c, v = (out[k].to_numpy() for k in ["open", "high", "low", "close", "volume"])
    checks = [
        ("positive_price", (o <= 0) | (h <= 0) | (l <= 0) | (c <= 0), "prices must be > 0"),
        ("non_negative_volume", v < 0, "volume must be >= 0"),
        ("ohlc_bounds", (l > np.minimum(o, c)) | (h < np.maximum(o, c)) | (l > h), "need low <= open,close <= high"),
    ]
    for rule, mask, msg in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise CandleValidationError(
                source, i + 1, rule, f"{msg}; got open={o[i]} high={h[i]} low={l[i]} close={c[i]} volume={v[i]}"
            )
    its = out["ts"].to_numpy()
    d = np.diff(its)
    if (d == 0).any():
        i = int(np.flatnonzero(d == 0)[0]) + 1
        raise CandleValidationError(source, i + 1, "duplicate_ts", f"ts {its[i]} ({_iso(its[i])}) repeats row {i}")
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise CandleValidationError(
            source, i + 1, "ordering", f"ts {its[i]} ({_iso(its[i])}) is earlier than row {i}'s {its[i - 1]}"
        )
    if timeframe is not None:
        step = timeframe_ms(timeframe)
        off = its % step != 0
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise CandleValidationError(source, i + 1, "timeframe_grid", f"ts {its[i]} is not aligned to {timeframe}")
    return out.reset_index(drop=True)


def last_closed_open_ms(timeframe: str, now_ms: int) -> int:
    """Open time (epoch ms) of the last candle of ``timeframe`` fully closed at ``now_ms`` (``ts + tf <= now``)."""
    step = timeframe_ms(timeframe)
    return (int(now_ms) // step) * step - step


def reject_future(df: pd.DataFrame, source: str, timeframe: str, now_ms: int, *, allow_forming: bool = False) -> None:
    """Reject candles that cannot exist yet at ``now_ms`` (issue 13 item 5).

    Files hold closed candles only, so any ``ts`` after the last closed candle's open time
    (:func:`last_closed_open_ms`) is an error. An exchange answer may hold the still-forming candle
    (``allow_forming=True``: it is dropped by :func:`drop_forming`), but nothing opening after ``now_ms``.
    ``df`` is a validated frame (sorted ``ts``); ``now_ms`` is the exchange's server time or the wall clock.

    Raises:
        CandleValidationError: rule ``future_candle``, naming ``source`` and the first offending row (1-based).
    """
    limit = int(now_ms) if allow_forming else last_closed_open_ms(timeframe, now_ms)
    ts = df["ts"].to_numpy()
    bad = ts > limit
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CandleValidationError(
            source,
            i + 1,
            "future_candle",
            f"ts {int(ts[i])} ({_iso(ts[i])}) opens after the last {timeframe} candle closed at "
            f"{_iso(now_ms)} UTC ({_iso(last_closed_open_ms(timeframe, now_ms))}); {int(bad.sum())} such rows",
        )


def _iso(ts_ms: int) -> str:
    return pd.Timestamp(int(ts_ms), unit="ms").isoformat()


def drop_forming(df: pd.DataFrame, timeframe: str, now_ms: int) -> pd.DataFrame:
    """Keep only closed candles: those with ``ts + tf <= now_ms`` (freqtrade's ``drop_incomplete``)."""
    return df[df["ts"].to_numpy() + timeframe_ms(timeframe) <= now_ms]


def find_gaps(ts: np.ndarray, timeframe: str) -> pd.DataFrame:
    """List gaps in a sorted array of candle open times.

    Returns a frame with ``before_ts`` (last candle before the gap), ``after_ts`` (first after) and
    ``missing_bars`` (int). Empty when the series is contiguous.
    """
    step = timeframe_ms(timeframe)
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) < 2:
        return pd.DataFrame({"before_ts": [], "after_ts": [], "missing_bars": []}, dtype="int64")
    d = np.diff(ts)
    idx = np.flatnonzero(d > step)
    return pd.DataFrame({"before_ts": ts[idx], "after_ts": ts[idx + 1], "missing_bars": d[idx] // step - 1})


@dataclass(frozen=True)
class GapSummary:
    """Gap statistics of one candle series."""

    n_gaps: int
    missing_bars: int
    expected_bars: int
    max_gap_bars: int

    @property
    def missing_fraction(self) -> float:
        return self.missing_bars / self.expected_bars if self.expected_bars else 0.0


def summarize_gaps(gaps: pd.DataFrame, first_ts: int | None, last_ts: int | None, timeframe: str) -> GapSummary:
    """Totals of ``find_gaps`` output over the span ``[first_ts, last_ts]``."""
    if first_ts is None or last_ts is None:
        return GapSummary(0, 0, 0, 0)
    expected = int((last_ts - first_ts) // timeframe_ms(timeframe)) + 1
    mb = gaps["missing_bars"].to_numpy() if len(gaps) else np.zeros(0, dtype=np.int64)
    return GapSummary(int(len(gaps)), int(mb.sum()), expected, int(mb.max()) if len(mb) else 0)


@numba.njit(cache=True)
def _resample_kernel(ts, o, h, l, c, extras, period):  # pragma: no cover - compiled
    n = ts.shape[0]
    k = extras.shape[1]
    cap = min(n, (ts[n - 1] - ts[0]) // period + 2) if n else 0  # periods spanned, not input rows
    out_ts = np.empty(cap, np.int64)
    out_o = np.empty(cap)
    out_h = np.empty(cap)
    out_l = np.empty(cap)
    out_c = np.empty(cap)
    out_x = np.zeros((cap, k))
    out_n = np.zeros(cap, np.int64)
    out_last = np.empty(cap, np.int64)
    j = -1
    cur = -1
    for i in range(n):
        p = ts[i] - ts[i] % period
        if p != cur:
            j += 1
            cur = p
            out_ts[j] = p
            out_o[j] = o[i]
            out_h[j] = h[i]
            out_l[j] = l[i]
            for m in range(k):
                out_x[j, m] = 0.0
        else:
            if h[i] > out_h[j]:
                out_h[j] = h[i]
            if l[i] < out_l[j]:
                out_l[j] = l[i]
        out_c[j] = c[i]
        for m in range(k):
            out_x[j, m] += extras[i, m]
        out_n[j] += 1
        out_last[j] = ts[i]
    m = j + 1
    return out_ts[:m], out_o[:m], out_h[:m], out_l[:m], out_c[:m], out_x[:m], out_n[:m], out_last[:m]


def resample_ohlcv(
    df: pd.DataFrame, source_tf: str, target_tf: str, *, drop_incomplete: bool = False, source_end_ms: int | None = None
) -> pd.DataFrame:
    """Aggregate sorted candles of ``source_tf`` into ``target_tf`` over **closed periods only**.

    OHLC follow the exchange convention (first open, max high, min low, last close); ``volume`` and
    the extra Binance columns present in ``df`` are summed. Periods are epoch-aligned.

    A period is *closed* when the source holds its last bar or any later bar (``source_end_ms``, the
    open time of the last source bar known, defaults to ``df.ts.max()``); the still-open last period
    is never emitted. A period with missing source bars is kept but flagged by ``bar_count`` <
    ``expected_bars`` (``drop_incomplete=True`` drops it); nothing is ever invented or forward-filled.

    Returns columns ``ts, open, high, low, close, volume, <extras>, bar_count, expected_bars``.

    Raises:
        ValueError: ``target_tf`` is not a whole multiple of ``source_tf``.
    """
    s, t = timeframe_ms(source_tf), timeframe_ms(target_tf)
    if t % s or t <= s:
        raise ValueError(f"cannot resample {source_tf} -> {target_tf}: target must be a larger multiple")
    extras = [c for c in ["volume"] + EXTRA_COLUMNS if c in df.columns]
    cols = ["ts", "open", "high", "low", "close"] + extras + ["bar_count", "expected_bars"]
    if df.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c in ("ts", "bar_count", "expected_bars") else "float64") for c in cols}
        )
    ts = df["ts"].to_numpy(np.int64)
    x = df[extras].to_numpy(np.float64) if extras else np.zeros((len(df), 0))
    pts, po, ph, pl, pc, px, pn, plast = _resample_kernel(
        ts,
        df["open"].to_numpy(np.float64),
        df["high"].to_numpy(np.float64),
        df["low"].to_numpy(np.float64),
        df["close"].to_numpy(np.float64),
        np.ascontiguousarray(x),
        t,
    )
    out = pd.DataFrame({"ts": pts, "open": po, "high": ph, "low": pl, "close": pc})
    for m, name in enumerate(extras):
        out[name] = px[:, m]
    out["bar_count"] = pn
    out["expected_bars"] = np.int64(t // s)
    end = int(ts[-1] if source_end_ms is None else source_end_ms)
    closed = end >= pts + t - s
    if drop_incomplete:
        closed &= pn == t // s
    return out[closed].reset_index(drop=True)
