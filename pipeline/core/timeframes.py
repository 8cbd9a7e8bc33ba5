"""Timeframes, symbol/partition-key conventions (pure).

Candle ``ts`` is the **open** time in epoch milliseconds UTC (Binance/ccxt convention); a candle of
timeframe ``tf`` covers ``[ts, ts + TIMEFRAME_MS[tf])`` and is closed once that end has passed.
Periods are aligned to the Unix epoch (so 4h candles open at 00/04/08/... UTC and 1d at 00:00 UTC,
as on Binance).
"""

from __future__ import annotations

TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


def timeframe_ms(tf: str) -> int:
    """Length of one candle in milliseconds. Raises ``KeyError`` naming the timeframe if unknown."""
    try:
        return TIMEFRAME_MS[tf]
    except KeyError:
        raise KeyError(f"unknown timeframe {tf!r}; supported: {sorted(TIMEFRAME_MS, key=TIMEFRAME_MS.get)}") from None


def resample_source(target: str, available: set[str] | list[str], base: str | None = None) -> str | None:
    """Pick where candles of ``target`` come from.

    Returns ``target`` itself when the source has it natively (Binance's own candles win), otherwise
    the coarsest available timeframe that divides ``target`` evenly (fewest bars to aggregate, longest
    history in ``shared/data``), or ``None`` when nothing can produce it. With ``base`` (``resample.base_timeframe``,
    seed ``data.base_timeframe``) every other target is resampled from ``base`` (``None`` when the source lacks it),
    the seed's "resampling from 1m to higher timeframes"; ``base`` itself follows the rule above.
    """
    if base is not None and target != base:
        return base if base in available and timeframe_ms(target) % timeframe_ms(base) == 0 else None
    if target in available:
        return target
    t = timeframe_ms(target)
    cands = [tf for tf in available if TIMEFRAME_MS[tf] < t and t % TIMEFRAME_MS[tf] == 0]
    return max(cands, key=TIMEFRAME_MS.__getitem__) if cands else None


def to_partition_key(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC-USDT`` (Dagster keys may not contain ``/``-like separators reliably)."""
    return symbol.replace("/", "-")


def from_partition_key(key: str) -> str:
    """``BTC-USDT`` -> ``BTC/USDT``."""
    return key.replace("-", "/", 1)


def file_stem(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC_USDT`` (file naming of shared/data and freqtrade)."""
    return symbol.replace("/", "_")
