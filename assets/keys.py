"""Every asset key and every asset-check name of the code location, in one place.

A key is its warehouse table: ``"signals.setups"`` → ``AssetKey(["signals", "setups"])`` (key prefix = layer =
warehouse schema), except where the table's last part would repeat another key's or be cut in the asset graph
(longer than 18 characters): then the key names the asset and the comment beside it its table (issue 14 item 4;
docs/decisions.md "Asset keys readable in the graph"). Asset modules import keys from here and never from each other, so a desk module depends only on
``assets/{common,checks,keys,promotion}`` and the pure and storage layers.
"""

from __future__ import annotations

import dagster as dg


def table_key(table: str) -> dg.AssetKey:
    """The asset key of warehouse table ``schema.table`` (``"ml.setup_meta"`` → ``ml/setup_meta``)."""
    return dg.AssetKey(table.split("."))


# sources (external assets, observed only)
EXTERNAL_DATA_FOLDER = table_key("external.data_folder")
EXTERNAL_EXCHANGE = table_key("external.exchange")
EXTERNAL_ONCHAIN_SHEET = table_key("external.onchain_sheet")

# shared layers
RAW_OHLCV = dg.AssetKey(["raw", "ingested_ohlcv"])  # table raw.ohlcv (market/ohlcv is the analysis-ready one)
RAW_ONCHAIN_METRICS = table_key("raw.onchain_metrics")
MARKET_OHLCV = table_key("market.ohlcv")
ONCHAIN_DAILY = table_key("market.onchain_daily")
SENTIMENT_DAILY = table_key("market.sentiment_daily")
FEATURES = table_key("features.technical")
REGIMES = table_key("regimes.market")
SNAPSHOT = table_key("ops.serving_snapshot")
HEALTH_REPORT = table_key("ops.health")  # no table: freshness against the clock now (issue 16)

# research baseline
BASELINE = table_key("ml.baseline_direction")
BASELINE_EVALUATION = table_key("ml.baseline_gate")  # no table: the promotion gate of the latest version
BASELINE_CHAMPION = table_key("ml.baseline_champion")  # no table: the @champion alias
BASELINE_BACKTEST = table_key("backtest.baseline")

# options desk
ONCHAIN_FEATURES = table_key("features.onchain")
OPTIONS_MODELS = table_key("ml.options_direction")
OPTIONS_CHAMPION = table_key("ml.options_champion")  # no table: the @champion aliases
OPTIONS_DAILY = table_key("signals.options_daily")
OPTIONS_TRADES = table_key("signals.options_trades")
OPTIONS_BACKTEST = table_key("backtest.options_desk")
OPTIONS_NOTICE = dg.AssetKey(["ops", "options_notice"])  # rows of ops.notifications (the daily decision message)

# setup scanner
SETUP_CANDIDATES = table_key("signals.setup_candidates")
SETUP_META = table_key("ml.setup_meta")
SETUP_META_EVALUATION = table_key("ml.setup_meta_gate")  # no table: the promotion gate of the latest version
SETUP_META_CHAMPION = table_key("ml.setup_champion")  # no table: the @champion alias
SETUP_THRESHOLDS = table_key("signals.setup_thresholds")
SETUPS = table_key("signals.setups")
SETUP_BACKTEST = table_key("backtest.setup_scanner")
SETUP_RETRO = table_key("signals.setup_retro")

# signal log and paper books (issue 16)
SIGNALS_LOG = table_key("signals.log")
PAPER_SETUPS = dg.AssetKey(["paper", "setup_book"])  # tables paper.* (rows of desk setup_scanner)
SETUP_NOTICES = dg.AssetKey(["ops", "setup_notices"])  # rows of ops.notifications (setup signals, closed trades)

# alpha portfolio (issue 18, seed 004)
ALPHA_FEATURES = table_key("features.alpha")
ALPHA_REGIME = table_key("regimes.alpha_market")
ALPHA_6H = table_key("ml.alpha_6h")  # predictions in ml.predictions (model_name alpha_6h)
ALPHA_6H_GATE = table_key("ml.alpha_6h_gate")  # no table: the promotion gate of the latest version
ALPHA_6H_CHAMPION = table_key("ml.alpha_6h_champion")  # no table: the @champion alias
ALPHA_24H = table_key("ml.alpha_24h")
ALPHA_24H_GATE = table_key("ml.alpha_24h_gate")
ALPHA_24H_CHAMPION = table_key("ml.alpha_24h_champion")
ALPHA_SCORES = table_key("signals.alpha_scores")
ALPHA_TARGETS = table_key("signals.alpha_targets")
ALPHA_BACKTEST = table_key("backtest.alpha_portfolio")  # rows of backtest.* with desk alpha_portfolio

# asset-check names (the same name on several assets is disambiguated by the asset key)
CANDLE_INTEGRITY = "candle_integrity"
GAPS_WITHIN_BUDGET = "gaps_within_budget"
FRESH = "fresh"
INPUTS_VALID = "inputs_valid"
CORE_COVERAGE = "core_coverage"
NO_NULLS_PAST_WARMUP = "no_nulls_past_warmup"
LABELS_VALID = "labels_valid"
PROMOTION_GATE = "promotion_gate"
ACCOUNTING_RECONCILES = "accounting_reconciles"
ONE_ROW_PER_DAY = "one_row_per_day"
STATES_VALID = "states_valid"
RECENT_DAYS_AVAILABLE = "recent_days_available"
PLANS_CONSISTENT = "plans_consistent"
STATUSES_VALID = "statuses_valid"
PAPER_MATCHES_BACKTEST = "paper_matches_backtest"


def model_gate(target: str) -> str:
    """Check name of one options model's (non-blocking) promotion verdict: ``p_long_gate`` / ``p_short_gate``."""
    return f"{target}_gate"


# Dagster groups = owners: a shared layer or one desk (docs/decisions.md "Groups")
GROUP_INGEST, GROUP_MARKET, GROUP_FEATURES, GROUP_REGIMES, GROUP_OPS = "ingest", "market", "features", "regimes", "ops"
GROUP_RESEARCH, GROUP_OPTIONS, GROUP_SETUPS = "research", "options_desk", "setup_scanner"
GROUP_ALPHA = "alpha_portfolio"  # seed 004 (issue 18)
GROUP_PAPER = "paper"  # the signal log and the paper books of every desk (issue 16)
