"""Every job of the code location, by name (the CLI and the schedules run these; nothing builds a job at run time).

Jobs are intersections of the two axes of ``assets/keys.py``: the group (owner: a shared layer or one desk) and the
key prefix (layer = warehouse schema), e.g. the research baseline's training job is ``groups("research") &
key_prefixes("ml")``.
"""

from __future__ import annotations

import dagster as dg

from assets.keys import (
    ALPHA_SCORES,
    FEATURES,
    GROUP_ALPHA,
    GROUP_OPTIONS,
    GROUP_RESEARCH,
    HEALTH_REPORT,
    MARKET_OHLCV,
    ONCHAIN_DAILY,
    ONCHAIN_FEATURES,
    OPTIONS_BACKTEST,
    OPTIONS_CHAMPION,
    OPTIONS_DAILY,
    OPTIONS_MODELS,
    OPTIONS_NOTICE,
    OPTIONS_TRADES,
    PAPER_SETUPS,
    RAW_OHLCV,
    RAW_ONCHAIN_METRICS,
    REGIMES,
    SENTIMENT_DAILY,
    SETUP_BACKTEST,
    SETUP_CANDIDATES,
    SETUP_META,
    SETUP_META_CHAMPION,
    SETUP_META_EVALUATION,
    SETUP_NOTICES,
    SETUP_RETRO,
    SETUP_THRESHOLDS,
    SETUPS,
    SIGNALS_LOG,
    SNAPSHOT,
)
from assets.paper.book import paper_reset
from pipeline.maintenance import db_maintenance_job
from pipeline.notify import NOTIFY_JOBS
from pipeline.partitions import SYMBOL_TIMEFRAME

#: notification steps: only the scheduled / live jobs notify, never a batch run (main_job, options_desk_job)
NOTICES = dg.AssetSelection.keys(OPTIONS_NOTICE, SETUP_NOTICES)
#: the freshness report against the clock now, and its checks: only health_job
HEALTH = dg.AssetSelection.keys(HEALTH_REPORT)

# the signal log and the paper books advance only in paper_job / the live job (a cold `trader run` neither logs
# history nor starts a book)
PAPER = dg.AssetSelection.keys(SIGNALS_LOG, PAPER_SETUPS)
# assets that run only through their own job (with run config), never in main_job
ON_DEMAND = dg.AssetSelection.keys(SETUP_RETRO) | NOTICES | HEALTH | PAPER

#: every job that changes what people read republishes the serving snapshot (the REST API and SQL users read it)
PUBLISH = dg.AssetSelection.keys(SNAPSHOT)

main_job = dg.define_asset_job(
    "main_job",
    selection=dg.AssetSelection.all() - ON_DEMAND,
    description="Everything: ingest -> market -> features -> regimes -> ml -> signals -> backtest -> serving snapshot.",
)
ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.keys(RAW_OHLCV, RAW_ONCHAIN_METRICS, SENTIMENT_DAILY),
    description="Sources only.",
)

# alpha portfolio (issue 18): the two models' training, gates and @champion, then the scores
alpha_train_job = dg.define_asset_job(
    "alpha_train_job",
    selection=(dg.AssetSelection.groups(GROUP_ALPHA) & dg.AssetSelection.key_prefixes("ml"))
    | dg.AssetSelection.keys(ALPHA_SCORES)
    | PUBLISH,
    description="Retrain the 6h / 24h alpha models, gate and promote them, and rescore (signals/alpha_scores).",
)
alpha_portfolio_job = dg.define_asset_job(
    "alpha_portfolio_job",
    selection=dg.AssetSelection.groups(GROUP_ALPHA) | PUBLISH,
    description="The alpha portfolio (seed 004): features, regime, the 6h / 24h models (retrained only when their "
    "inputs changed), scores, hourly targets and the backtest of the book; republishes the serving snapshot.",
)

# research baseline
train_job = dg.define_asset_job(
    "train_job",
    selection=(dg.AssetSelection.groups(GROUP_RESEARCH) & dg.AssetSelection.key_prefixes("ml")) | PUBLISH,
    description="Train, register and (if the promotion gate passes) promote the baseline model.",
)
backtest_job = dg.define_asset_job(
    "backtest_job",
    selection=(dg.AssetSelection.groups(GROUP_RESEARCH) & dg.AssetSelection.key_prefixes("backtest")) | PUBLISH,
    description="Backtest the baseline strategy on the stored out-of-sample predictions.",
)

# options desk (seed 000)
options_desk_job = dg.define_asset_job(
    "options_desk_job",
    selection=(dg.AssetSelection.groups(GROUP_OPTIONS) - NOTICES) | PUBLISH,
    description="On-chain features, p_long/p_short models and champions, daily signals and trades, evaluation.",
)
options_models_job = dg.define_asset_job(
    "options_models_job",
    selection=(dg.AssetSelection.keys(OPTIONS_MODELS, OPTIONS_CHAMPION, OPTIONS_DAILY, OPTIONS_TRADES)) | PUBLISH,
    description="Fit p_long / p_short, promote those that pass their gate, refresh the daily signals and trades.",
)

options_daily_job = dg.define_asset_job(
    "options_daily_job",
    selection=dg.AssetSelection.keys(
        RAW_ONCHAIN_METRICS,
        ONCHAIN_DAILY,
        SENTIMENT_DAILY,
        ONCHAIN_FEATURES,
        OPTIONS_DAILY,
        OPTIONS_TRADES,
        OPTIONS_BACKTEST,
    )
    | PUBLISH
    | NOTICES,
    description="The options desk's day (options_daily schedule): ingest on-chain (files or sheet) and Fear & Greed, "
    "on-chain features, the daily decision and trades with the current champions' scores (no training: "
    "options_models_job), evaluation, serving snapshot, then the options_decision notification.",
)

# health (issue 16): freshness against the clock now (ops/health and its checks), one data_stale message per stale input
health_job = dg.define_asset_job(
    "health_job",
    selection=HEALTH,
    description="Freshness of candles, on-chain, sentiment and the signal tables against the clock now (ops/health "
    "and its <input>_fresh checks); a data_stale notification per stale input.",
)

# setup scanner (seed 002): live scan, and the weekly train -> calibrate -> tune chain
setup_scan_job = dg.define_asset_job(
    "setup_scan_job",
    selection=(dg.AssetSelection.keys(SETUP_CANDIDATES, SETUPS)) | PUBLISH,
    description="Scan the latest closed candles, gate with the champion and tuned thresholds, execute (the seed's "
    "scan_signals + execute_signals).",
)
setup_train_job = dg.define_asset_job(
    "setup_train_job",
    selection=(dg.AssetSelection.keys(SETUP_META)) | PUBLISH,
    description="Retrain the setup meta-model (walk-forward, isotonic, MLflow version).",
)
setup_calibrate_job = dg.define_asset_job(
    "setup_calibrate_job",
    selection=(dg.AssetSelection.keys(SETUP_META_EVALUATION, SETUP_META_CHAMPION)) | PUBLISH,
    description="Promotion gate on the latest version's calibrated OOS scores; promote if it passes.",
)
setup_tune_job = dg.define_asset_job(
    "setup_tune_job",
    selection=(dg.AssetSelection.keys(SETUP_THRESHOLDS, SETUPS, SETUP_BACKTEST)) | PUBLISH,
    description="Re-tune the thresholds, re-gate and re-simulate the signals, refresh the report.",
)
setup_retro_job = dg.define_asset_job(
    "setup_retro_job",
    selection=dg.AssetSelection.keys(SETUP_RETRO),
    description="Retro-scan: backfill a window's signals with the live gating and simulate them (signals.setup_retro; "
    "run config: start, end, stride, limit_per_pair).",
)

# signal log and paper trading (issue 16)
paper_job = dg.define_asset_job(
    "paper_job",
    selection=PAPER,
    description="Log the new gated signals (signals.log) and advance the paper books on the new closed bars; with "
    "the blocking check paper_matches_backtest.",
)


@dg.job(description="Delete a desk's paper book (run config: ops.paper_reset.config.desk); signals.log is kept.")
def paper_reset_job():
    paper_reset()


#: run config of every live run: the scan rescans only the bars after its marks (assets/setup_scanner/candidates.py)
#: and signals/setups gates the new candidates only and resumes the execution from its stored state (issue 16, speed).
#: The sensors pass it with each run request: a run over a partition *range* (their tags) does not get the job's
#: partitioned config, only its defaults (incremental off).
LIVE_RUN_CONFIG = {
    "ops": {
        "signals__setup_candidates": {"config": {"incremental": True}},
        "signals__setups": {"config": {"incremental": True}},
    }
}

# live: one run per timeframe per newly closed candle (pipeline/sensors.py) over the symbols with new candles; it
# never trains, and leaves the paper check (a re-simulation of the whole paper window) to paper_job
live_candle_job = dg.define_asset_job(
    "live_candle_job",
    selection=dg.AssetSelection.keys(RAW_OHLCV, MARKET_OHLCV, FEATURES, REGIMES, SETUP_CANDIDATES, SETUPS)
    | PAPER.without_checks()
    | dg.AssetSelection.keys(SETUP_NOTICES)
    | PUBLISH,
    partitions_def=SYMBOL_TIMEFRAME,
    config=LIVE_RUN_CONFIG,
    description="Newly closed candles (run key timeframe:ts, launched by the closed_candles_<tf> sensors over the "
    "symbols with new candles): ingest those partitions, rebuild their market candles, features and regimes, scan the "
    "new bars (incremental) and gate the setups with the current champion and thresholds (no training), log the new signals, step the paper "
    "book, notify (new signals, closed trades), republish the serving snapshot.",
)

SETUP_JOBS = [setup_scan_job, setup_train_job, setup_calibrate_job, setup_tune_job, setup_retro_job]
JOBS = [
    main_job,
    ingest_job,
    train_job,
    alpha_train_job,
    alpha_portfolio_job,
    backtest_job,
    options_desk_job,
    options_models_job,
    options_daily_job,
    health_job,
    db_maintenance_job,
    paper_job,
    paper_reset_job,
    *SETUP_JOBS,
    *NOTIFY_JOBS,
    live_candle_job,
]
