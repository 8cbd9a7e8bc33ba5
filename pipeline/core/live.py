"""Which candles a live sensor asks for (pure): the newly closed ones, each once.

A candle that opens at ``ts`` on timeframe ``step_ms`` closes at ``ts + step_ms``; it is *due* once the exchange
clock has passed its close by ``lag_ms`` (the exchange settles the last trades; Binance publishes the closed kline
within about a second). The cursor is the newest due candle already requested per symbol; with no cursor only the
newest due candle is requested (a sensor that starts does not ask for the whole history: ``trader run`` loads it).
"""

from __future__ import annotations

import numpy as np


def due_candles(open_ts, cursor_ts: int | None, step_ms: int, now_ms: int, lag_ms: int) -> list[int]:
    """Open times (epoch ms, ascending, unique) of the candles to request now.

    Args:
        open_ts: open times the exchange returned (any order, the forming candle included), int epoch ms.
        cursor_ts: the newest candle already requested (None: the sensor has not seen this symbol).
        step_ms: the timeframe in ms. now_ms: the exchange clock. lag_ms: settle time after a close.

    Returns:
        Every due candle newer than ``cursor_ts``; without a cursor, the newest due candle alone (or nothing).
    """
    ts = np.unique(np.asarray(open_ts, dtype=np.int64))
    due = ts[ts + step_ms + lag_ms <= now_ms]
    if cursor_ts is None:
        return [int(due[-1])] if len(due) else []
    return [int(t) for t in due[due > cursor_ts]]
