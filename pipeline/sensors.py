"""Sensors: what makes the pipeline run by itself (issue 16).

``closed_candle_sensor(timeframe, cfg)`` watches the exchange for newly closed candles of one timeframe and asks for
one run of :data:`pipeline.jobs.live_candle_job` per candle: run key ``timeframe:symbol:ts`` (Dagster launches a run
key once, so a tick that sees the same candle again, or a restarted daemon, never runs it twice), partition
``symbol|timeframe``. The cursor is JSON ``{symbol: open ts of the newest candle requested}``; each tick asks the
exchange for the candles from the cursor on only (one light request per symbol). Which candles are due is
:func:`pipeline.core.live.due_candles`. An exchange error on one symbol is logged and leaves that symbol's cursor
where it was (its candles are requested on a later tick); the other symbols go on.
"""

from __future__ import annotations

import json

import ccxt
import dagster as dg

from pipeline.alerts import alert_sensors
from pipeline.config import TraderConfig
from pipeline.core.live import due_candles
from pipeline.core.timeframes import timeframe_ms
from pipeline.jobs import live_candle_job
from pipeline.partitions import partition_key
from resources.exchange import ExchangeSource


def closed_candle_sensor(timeframe: str, cfg: TraderConfig) -> dg.SensorDefinition:
    """The sensor ``closed_candles_<timeframe>`` (RUNNING by default when ``live.enabled``)."""
    live = cfg.live
    symbols = list(live.symbols or cfg.universe.symbols)
    step, lag = timeframe_ms(timeframe), int(live.close_lag_s * 1000)
    state = (
        "ON (live.enabled / trader live)."
        if live.enabled
        else "OFF unless started by `trader live` (or live.enabled: true, or switched on here with the daemon running)."
    )

    @dg.sensor(
        name=f"closed_candles_{timeframe}",
        job=live_candle_job,
        minimum_interval_seconds=live.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING if live.enabled else dg.DefaultSensorStatus.STOPPED,
        description=f"Every {live.sensor_interval_s} s (live.sensor_interval_s): asks the exchange for the newest "
        f"{timeframe} candles of {len(symbols)} symbols and launches live_candle_job once per candle closed at least "
        f"{live.close_lag_s:g} s ago (live.close_lag_s), run key {timeframe}:<symbol>:<open ts>. {state}",
    )
    def _sensor(context: dg.SensorEvaluationContext, exchange: ExchangeSource):
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = exchange.now_ms()
        requests = []
        for sym in symbols:
            last = cursor.get(sym)
            try:
                seen = exchange.newest_candles(sym, timeframe, None if last is None else last + step)
            except ccxt.BaseError as e:
                context.log.warning(f"{sym} {timeframe}: {type(e).__name__}: {str(e)[:200]} (retried next tick)")
                continue
            due = due_candles(seen, last, step, now, lag)
            for ts in due:
                requests.append(
                    dg.RunRequest(
                        run_key=f"{timeframe}:{sym}:{ts}",
                        partition_key=partition_key(sym, timeframe),
                        tags={"trader/candle_ts": str(ts), "trader/symbol": sym, "trader/timeframe": timeframe},
                    )
                )
            if due:
                cursor[sym] = due[-1]
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        if not requests:
            return dg.SkipReason(f"no {timeframe} candle closed since the last tick (exchange clock {now})")
        return requests

    return _sensor


def sensors(cfg: TraderConfig) -> list[dg.SensorDefinition]:
    """Every sensor of the code location: one closed-candle sensor per ``live.timeframes``, then the health alerts
    (:mod:`pipeline.alerts`: run failure, sensor lag)."""
    tfs = cfg.live.timeframes or cfg.setup_scanner.timeframes
    return [closed_candle_sensor(tf, cfg) for tf in tfs] + alert_sensors(cfg)
