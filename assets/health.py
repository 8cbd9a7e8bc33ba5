"""Health (issue 16): the asset ``ops/health`` of ``health_job`` (the ``health`` schedule) and its checks
``<input>_fresh`` — the age of candles, on-chain, sentiment and every signal table against the clock now — with a
``data_stale`` notification per stale input. The checks sit on ``ops/health`` (not on the judged assets) so that no
other job runs them: a job that selects an asset runs that asset's checks.

The rule is :func:`pipeline.core.health.judge`; bounds: ``health.max_candle_lag_bars`` (candle series of
``health.candle_timeframes``, default the live timeframes), ``api.health.max_onchain_age_hours`` /
``max_sentiment_age_hours`` (the REST API's "degraded" uses the same), ``options_desk.max_data_age_days`` (options
signals, as the CLI's STALE DATA warning), ``health.max_scan_age_hours`` (the setup scan). "Now" is the exchange's
clock with ``source: exchange`` (the replay exchange's simulated clock under ``trader live --replay``), else the
wall clock. A stale input's message has dedup key ``data_stale:<source>:<newest>``: one per staleness episode; the
candle series of one timeframe make one message (``candles 15m``, the stalest series: :func:`episodes`).
"""

import time

import dagster as dg
import pandas as pd

from assets.common import POOL, md_table, ts_iso
from assets.keys import GROUP_OPS, HEALTH_REPORT, MARKET_OHLCV, ONCHAIN_DAILY, OPTIONS_DAILY, SENTIMENT_DAILY, SETUPS
from pipeline.config import settings
from pipeline.core.health import episodes, judge
from pipeline.core.messages import data_stale
from resources.exchange import ExchangeSource
from resources.notifier import Notifier, deliver, enqueue
from resources.warehouse import WarehouseResource
from warehouse import readers
from warehouse.serving import freshness

#: check name of ops/health -> the table it judges
CHECKS = {
    "candles_fresh": MARKET_OHLCV,
    "onchain_fresh": ONCHAIN_DAILY,
    "sentiment_fresh": SENTIMENT_DAILY,
    "options_signals_fresh": OPTIONS_DAILY,
    "setup_scan_fresh": SETUPS,
}


def now_ms(cfg, exchange: ExchangeSource) -> int:
    """The health clock: the exchange's with ``source: exchange``, else the wall clock (epoch ms)."""
    return exchange.now_ms() if cfg.source == "exchange" else int(time.time() * 1000)


@dg.asset(
    key=HEALTH_REPORT,
    group_name=GROUP_OPS,
    pool=POOL,
    kinds={"duckdb", "telegram"},
    deps=list(CHECKS.values()),
    check_specs=[
        dg.AssetCheckSpec(
            name,
            asset=HEALTH_REPORT,
            description=f"WARN when {'.'.join(a.path)} is older than its bound against the clock now; a data_stale "
            "notification per stale input.",
        )
        for name, a in CHECKS.items()
    ],
    description="The age of every input and signal table against the clock now (no table: the report is this "
    "metadata and the checks); enqueues and delivers one data_stale message per stale input.",
)
def health_report(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    notifier: Notifier,
    exchange: ExchangeSource,
) -> dg.MaterializeResult:
    cfg = settings()
    now = now_ms(cfg, exchange)
    with warehouse.connect() as con:
        rows = judged(con, cfg, now)
        stale = episodes(rows)
        new = sum(
            enqueue(
                con,
                data_stale(r.source, ts_iso(r.newest) or "empty", r.age_hours or 0.0, r.max_age_hours),
                cfg.notify.kinds,
            )
            for r in stale
        )
        rep = deliver(con, notifier, cfg.notify.outbox) if stale else None
    n_stale = sum(r.stale for r in rows)
    context.log.info(f"{n_stale} stale of {len(rows)} judged at {ts_iso(now)}; {new} new data_stale messages")
    table = pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in rows], columns=COLUMNS)
    table["newest"] = table["newest"].map(ts_iso)
    return dg.MaterializeResult(
        metadata={
            "now": ts_iso(now),
            "judged": len(rows),
            "stale": n_stale,
            "alerts": len(stale),
            "new_messages": int(new),
            "delivered": 0 if rep is None else rep.delivered,
            "inputs": md_table(table, 200),
        },
        check_results=check_results(table),
    )


COLUMNS = ["source", "newest", "age_hours", "max_age_hours", "stale", "asset"]


def judged(con, cfg, now: int) -> list:
    """:func:`pipeline.core.health.judge` of the warehouse at ``now`` (epoch ms) with the configured bounds."""
    return judge(
        freshness(con),
        now,
        candle_timeframes=cfg.health.candle_timeframes or cfg.live.timeframes or cfg.setup_scanner.timeframes,
        max_candle_lag_bars=cfg.health.max_candle_lag_bars,
        max_onchain_age_hours=cfg.api.health.max_onchain_age_hours,
        max_sentiment_age_hours=cfg.api.health.max_sentiment_age_hours,
        max_signal_age_hours=cfg.options_desk.max_data_age_days * 24.0,
        scan_ran_ms=readers.computed_at_ms(con, "signals.setups"),
        max_scan_age_hours=cfg.health.max_scan_age_hours,
    )


def check_results(table: pd.DataFrame) -> list[dg.AssetCheckResult]:
    """One WARN check per judged table of :data:`CHECKS`: passed when none of its rows in ``table`` is stale."""
    out = []
    for name, a in CHECKS.items():
        mine = table[table["asset"] == ".".join(a.path)]
        bad = mine[mine["stale"].astype(bool)]
        out.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=bool(bad.empty),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"judged": len(mine), "stale": len(bad), "inputs": md_table(mine.drop(columns=["asset"]))},
            )
        )
    return out
