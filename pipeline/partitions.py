"""Partition definitions: ``symbol × timeframe`` (static, from ``trader.yaml``)."""

from __future__ import annotations

import dagster as dg

from pipeline.config import settings
from pipeline.core.timeframes import from_partition_key, to_partition_key

_cfg = settings()
SYMBOLS = dg.StaticPartitionsDefinition([to_partition_key(s) for s in _cfg.universe.symbols])
TIMEFRAMES = dg.StaticPartitionsDefinition(list(_cfg.universe.timeframes))
SYMBOL_TIMEFRAME = dg.MultiPartitionsDefinition({"symbol": SYMBOLS, "timeframe": TIMEFRAMES})


def partition_key(symbol: str, timeframe: str) -> dg.MultiPartitionKey:
    """Key for ``BTC/USDT`` (or ``BTC-USDT``) × ``1h``."""
    return dg.MultiPartitionKey({"symbol": to_partition_key(symbol), "timeframe": timeframe})


def parse_key(key: str) -> tuple[str, str]:
    """Partition key -> ``(BASE/QUOTE, timeframe)``."""
    kbd = getattr(key, "keys_by_dimension", None)
    if kbd is None:  # plain string "BTC-USDT|1h" (dimension names sorted: symbol, timeframe)
        sym, tf = str(key).split("|")
    else:
        sym, tf = kbd["symbol"], kbd["timeframe"]
    return from_partition_key(sym), tf


def full_range_tags(symbols: list[str] | None = None, timeframes: list[str] | None = None) -> dict[str, str]:
    """Run tags selecting the rectangle ``symbols × timeframes`` (first..last in definition order)."""
    syms = [to_partition_key(s) for s in (symbols or _cfg.universe.symbols)]
    tfs = timeframes or list(_cfg.universe.timeframes)
    order_s, order_t = SYMBOLS.get_partition_keys(), TIMEFRAMES.get_partition_keys()
    s0, s1 = min(syms, key=order_s.index), max(syms, key=order_s.index)
    t0, t1 = min(tfs, key=order_t.index), max(tfs, key=order_t.index)
    return {
        "dagster/asset_partition_range_start": str(dg.MultiPartitionKey({"symbol": s0, "timeframe": t0})),
        "dagster/asset_partition_range_end": str(dg.MultiPartitionKey({"symbol": s1, "timeframe": t1})),
    }
