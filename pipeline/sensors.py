"""Sensors: what makes the pipeline run by itself (issue 16).

``closed_candle_sensor(timeframe, cfg)`` watches the exchange for newly closed candles of one timeframe. Each tick it
asks the exchange for the candles from its cursor on (one light request per symbol) and, when some closed (at least
``live.close_lag_s`` ago, :func:`pipeline.core.live.due_candles`), requests **one** run of
:data:`pipeline.jobs.live_candle_job` over the symbols that have new candles (a partition range ``first..last symbol
x timeframe``, the rectangle the assets already run over in ``trader run``). Its run key is
``timeframe:ts`` of the newest closed candle, with the symbols appended when not every watched symbol has it, so a
repeated tick or a restarted daemon never launches the same candle twice (Dagster launches a run key once).

Candles are coalesced, never queued: while a live run of this timeframe is queued or running, the tick requests
nothing and leaves the cursor where it was; the next run then ingests every candle closed since (the ingest reads
from each partition's checkpoint, so its work is the new candles only). A replay at ``--speed 600`` (a 15m candle
every 1.5 s) therefore runs as fast as the machine can, one run at a time, instead of piling up a queue.

Live runs carry ``dagster/priority`` :data:`LIVE_PRIORITY`: when several runs wait in the queue (the warehouse pool
admits one step at a time), a new candle's run is launched before waiting notification or maintenance runs.

The cursor is JSON ``{symbol: open ts of the newest candle requested}``. An exchange error on one symbol is logged
and leaves that symbol's cursor where it was (its candles are requested on a later tick); the others go on.
"""

from __future__ import annotations

import json

import ccxt
import dagster as dg

from pipeline.alerts import alert_sensors
from pipeline.config import TraderConfig
from pipeline.core.live import due_candles
from pipeline.core.timeframes import timeframe_ms
from pipeline.jobs import LIVE_RUN_CONFIG, live_candle_job
from pipeline.partitions import full_range_tags
from resources.exchange import ExchangeSource

#: run statuses that mean a live run of the timeframe is still coming or going
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


#: run priority of the live runs: the queue launches them before any waiting run of priority 0 (alerts, maintenance)
LIVE_PRIORITY = "10"


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
        f"{timeframe} candles of {len(symbols)} symbols and, when some closed at least {live.close_lag_s:g} s ago "
        f"(live.close_lag_s), launches one live_candle_job run over those symbols (run key {timeframe}:<open ts>); "
        f"nothing while the previous {timeframe} run is still going (candles coalesce). {state}",
    )
    def _sensor(context: dg.SensorEvaluationContext, exchange: ExchangeSource):
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=live_candle_job.name, statuses=ACTIVE, tags={"trader/timeframe": timeframe}),
            limit=1,
        )
        if busy:
            return dg.SkipReason(f"live run {busy[0].run_id[:8]} of {timeframe} still in progress; candles coalesce")
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = exchange.now_ms()
        new: dict[str, int] = {}
        for sym in symbols:
            last = cursor.get(sym)
            try:
                seen = exchange.newest_candles(sym, timeframe, None if last is None else last + step)
            except ccxt.BaseError as e:
                context.log.warning(f"{sym} {timeframe}: {type(e).__name__}: {str(e)[:200]} (retried next tick)")
                continue
            due = due_candles(seen, last, step, now, lag)
            if due:
                new[sym] = due[-1]
        if not new:
            context.update_cursor(json.dumps(cursor, sort_keys=True))
            return dg.SkipReason(f"no {timeframe} candle closed since the last tick (exchange clock {now})")
        newest = max(new.values())
        key = f"{timeframe}:{newest}" + ("" if len(new) == len(symbols) else ":" + ",".join(sorted(new)))
        cursor |= new
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        tags = {
            **full_range_tags(list(new), [timeframe]),
            "trader/candle_ts": str(newest),
            "trader/timeframe": timeframe,
            "trader/symbols": ",".join(sorted(new)),
            "dagster/priority": LIVE_PRIORITY,
        }
        return dg.RunRequest(run_key=key, tags=tags, run_config=LIVE_RUN_CONFIG)

    return _sensor


def sensors(cfg: TraderConfig) -> list[dg.SensorDefinition]:
    """Every sensor of the code location: one closed-candle sensor per ``live.timeframes``, then the health alerts
    (:mod:`pipeline.alerts`: run failure, sensor lag)."""
    tfs = cfg.live.timeframes or cfg.setup_scanner.timeframes
    return [closed_candle_sensor(tf, cfg) for tf in tfs] + alert_sensors(cfg)
