"""Table contracts of the warehouse (DESIGN.md §4).

Primary keys are *logical*: DuckDB index maintenance costs ~3x on bulk upserts, so uniqueness is
enforced by :func:`warehouse.io.upsert` (delete-by-key then insert, in one transaction) and verified
by blocking asset checks. ``ts`` is the candle open time in epoch ms UTC (BIGINT); ``open_time`` is
the same instant as a naive UTC TIMESTAMP (virtual column) for people writing SQL.
"""

from __future__ import annotations

from pipeline.core.alpha_features import FEATURES as ALPHA_FEATURES
from pipeline.core.indicators import FEATURE_COLUMNS

_CANDLE_KEY = "exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts BIGINT NOT NULL"
_OPEN_TIME = "open_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ts * 1000)) VIRTUAL"
_OHLCV = (
    "open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, quote_volume DOUBLE, "
    "trades DOUBLE, taker_buy_base DOUBLE, taker_buy_quote DOUBLE"
)

PRIMARY_KEYS: dict[str, list[str]] = {
    "raw.ohlcv": ["exchange", "symbol", "timeframe", "ts"],
    "raw.ingest_checkpoints": ["source_kind", "exchange", "symbol", "timeframe", "locator"],
    "raw.onchain_metrics": ["date", "source", "metric"],
    "raw.onchain_withdrawn": ["date", "source", "metric"],
    "market.ohlcv": ["exchange", "symbol", "timeframe", "ts"],
    "market.onchain_daily": ["date"],
    "market.onchain_columns": ["column"],
    "market.sentiment_daily": ["date"],
    "features.technical": ["exchange", "symbol", "timeframe", "ts"],
    "regimes.market": ["exchange", "symbol", "timeframe", "ts"],
    "ops.publish_log": ["published_at"],
    "ops.asset_inputs": ["asset"],
    "ops.scan_marks": ["asset", "exchange", "symbol", "timeframe"],
    "ops.input_errors": ["input", "partition_key", "locator"],
    "ops.notifications": ["dedup_key"],
    "ops.notification_attempts": ["attempt_id"],
    "ml.predictions": ["model_name", "exchange", "symbol", "timeframe", "ts"],
    "features.alpha": ["exchange", "symbol", "timeframe", "ts"],
    "regimes.alpha_market": ["ts"],
    "signals.alpha_scores": ["exchange", "symbol", "ts"],
    "ml.folds": ["model_name", "mlflow_run_id", "fold"],
    "ml.model_runs": ["mlflow_run_id"],
    "ml.options_scores": ["model_name", "mlflow_run_id", "date"],
    "ml.setup_meta_scores": ["mlflow_run_id", "candidate_id"],
    "backtest.runs": ["run_id"],
    "backtest.trades": ["run_id", "trade_id"],
    "backtest.equity": ["run_id", "ts"],
    "signals.log": ["desk", "signal_id"],
    "signals.alpha_targets": ["ts", "symbol"],
    "paper.state": ["desk", "version"],
    "paper.orders": ["desk", "signal_id", "status"],
    "paper.trades": ["desk", "asset", "entry_ts"],
    "paper.positions": ["desk", "asset"],
    "paper.equity": ["desk", "ts"],
}

# backtest.trades / backtest.equity columns a backtest writes (besides run_id): the table contract of every desk
TRADE_COLUMNS = [
    "trade_id",
    "symbol",
    "direction",
    "signal_ts",
    "entry_ts",
    "exit_ts",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "units",
    "notional",
    "fees",
    "pnl",
    "ret",
    "exit_reason",
    "mae",
    "mfe",
    "r_multiple",
    "tp1_hit",
    "sl_initial",
    "tp_initial",
    "bars_held",
    "instrument",
    "underlying_entry_price",
    "underlying_exit_price",
    "avg_exit_price",
    "tp1_price",
    "tp1_ts",
    "leverage",
]
#: what the price columns of ``backtest.trades`` mean, the same for every desk: ``entry_price`` / ``exit_price`` are
#: the traded instrument's price per unit in the symbol's quote currency (spot or perpetual: the pair's price; options
#: desk: the structure's premium paid and its value at expiry, USD per BTC of structure); ``underlying_entry_price`` /
#: ``underlying_exit_price`` are the underlying's price at the same instants (for a linear instrument, its own price);
#: ``instrument`` names what was traded when it is not the symbol itself (options desk: the structure, e.g.
#: ``CALL_SPREAD``), NULL otherwise. ``units × entry_price = notional`` and ``pnl`` is net of ``fees`` on every desk.
EQUITY_COLUMNS = [
    "ts",
    "equity",
    "cash",
    "position_value",
    "gross_exposure",
    "n_positions",
    "drawdown",
    "benchmark_equity",
]

DDL = [
    "CREATE SCHEMA IF NOT EXISTS raw",
    "CREATE SCHEMA IF NOT EXISTS market",
    "CREATE SCHEMA IF NOT EXISTS features",
    "CREATE SCHEMA IF NOT EXISTS regimes",
    "CREATE SCHEMA IF NOT EXISTS ops",
    "CREATE SCHEMA IF NOT EXISTS ml",
    "CREATE SCHEMA IF NOT EXISTS backtest",
    "CREATE SCHEMA IF NOT EXISTS signals",
    "CREATE SCHEMA IF NOT EXISTS paper",
    f"CREATE TABLE IF NOT EXISTS raw.ohlcv ({_CANDLE_KEY}, {_OHLCV}, locator VARCHAR, ingested_at TIMESTAMP, {_OPEN_TIME})",
    """CREATE TABLE IF NOT EXISTS raw.ingest_checkpoints (source_kind VARCHAR NOT NULL, exchange VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, locator VARCHAR NOT NULL, fingerprint VARCHAR,
        last_ts BIGINT, rows BIGINT, updated_at TIMESTAMP)""",
    "CREATE TABLE IF NOT EXISTS raw.onchain_metrics (date DATE NOT NULL, source VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE)",
    # values a re-read vendor file no longer has (missing marker, removed row/column): the stored value is kept in
    # raw.onchain_metrics and flagged here until the vendor sends a value again (docs/decisions.md, issue 13 item 6)
    """CREATE TABLE IF NOT EXISTS raw.onchain_withdrawn (date DATE NOT NULL, source VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, kept_value DOUBLE, locator VARCHAR, detected_at TIMESTAMP)""",
    f"""CREATE TABLE IF NOT EXISTS market.ohlcv ({_CANDLE_KEY}, {_OHLCV}, bar_count INTEGER, expected_bars INTEGER,
        origin VARCHAR, {_OPEN_TIME})""",
    """CREATE TABLE IF NOT EXISTS market.sentiment_daily (date DATE NOT NULL, available_at TIMESTAMP NOT NULL,
        fng_value INTEGER, fng_class VARCHAR, source VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS features.technical ({_CANDLE_KEY}, close DOUBLE,
        {", ".join(c + " DOUBLE" for c in FEATURE_COLUMNS)}, {_OPEN_TIME})""",
    f"""CREATE TABLE IF NOT EXISTS regimes.market ({_CANDLE_KEY}, trend_regime VARCHAR, trend_strength VARCHAR,
        volatility_level VARCHAR, natr_pct_rank DOUBLE, regime_confidence DOUBLE, regime_stability DOUBLE,
        regime_age_bars BIGINT, regime VARCHAR, {_OPEN_TIME})""",
    # issue 18 (seed 004, alpha portfolio): new tables only, created on the next read-write open of an older warehouse.
    # features.alpha: the 13 seed features per asset and hour (pipeline.core.alpha_features); tier is an integer
    f"""CREATE TABLE IF NOT EXISTS features.alpha ({_CANDLE_KEY},
        {", ".join(c + (" BIGINT" if c == "tier" else " DOUBLE") for c in ALPHA_FEATURES)}, close DOUBLE, {_OPEN_TIME})""",
    # regimes.alpha_market: the market regime per hour (trend | chop | down) and the rule's inputs
    f"""CREATE TABLE IF NOT EXISTS regimes.alpha_market (ts BIGINT NOT NULL, regime VARCHAR, raw_regime VARCHAR,
        btc_close DOUBLE, btc_ema_fast DOUBLE, btc_ema_slow DOUBLE, breadth DOUBLE, n_assets BIGINT,
        regime_age_bars BIGINT, {_OPEN_TIME})""",
    # signals.alpha_scores: per asset and hour the cost-adjusted expected return the portfolio ranks (source model |
    # fallback; pred_* are forward vol-normalised returns, exp_ret / cost / exp_ret_net fractions)
    f"""CREATE TABLE IF NOT EXISTS signals.alpha_scores (exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
        ts BIGINT NOT NULL, regime VARCHAR, pred_6h DOUBLE, pred_24h DOUBLE, exp_ret DOUBLE, cost DOUBLE,
        exp_ret_net DOUBLE, rvol_24h DOUBLE, atr_14 DOUBLE, close DOUBLE, tier BIGINT, source VARCHAR,
        model_version VARCHAR, {_OPEN_TIME})""",
    """CREATE TABLE IF NOT EXISTS ops.slice_quality (tbl VARCHAR, exchange VARCHAR, symbol VARCHAR, timeframe VARCHAR,
        stats JSON, checked_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS ops.gaps (tbl VARCHAR, exchange VARCHAR, symbol VARCHAR, timeframe VARCHAR,
        before TIMESTAMP, after TIMESTAMP, missing_bars BIGINT)""",
    "CREATE TABLE IF NOT EXISTS ops.asset_inputs (asset VARCHAR, fingerprint VARCHAR, updated_at TIMESTAMP)",
    # issue 16 (speed): per series, the last bar a scan saw, how many bars it had up to it and the scan's configuration
    # fingerprint, so the live job rescans only the bars after it (assets/setup_scanner/candidates.py). A new table
    # only: a warehouse created before gets it on its next read-write open, and without marks the scan is full.
    """CREATE TABLE IF NOT EXISTS ops.scan_marks (asset VARCHAR, exchange VARCHAR, symbol VARCHAR, timeframe VARCHAR,
        last_ts BIGINT, bars BIGINT, fingerprint VARCHAR, updated_at TIMESTAMP)""",
    f"""CREATE TABLE IF NOT EXISTS ml.predictions (model_name VARCHAR NOT NULL, mlflow_run_id VARCHAR, {_CANDLE_KEY},
        fold INTEGER, p_raw DOUBLE, p_cal DOUBLE, win DOUBLE, label_end_ts BIGINT, in_training_universe BOOLEAN, {_OPEN_TIME})""",
    """CREATE TABLE IF NOT EXISTS ml.folds (model_name VARCHAR NOT NULL, mlflow_run_id VARCHAR NOT NULL, fold INTEGER NOT NULL,
        train_start TIMESTAMP, train_end TIMESTAMP, test_start TIMESTAMP, test_end TIMESTAMP, n_train BIGINT, n_test BIGINT,
        n_purged BIGINT, n_embargoed BIGINT, fit_seconds DOUBLE, auc_raw DOUBLE, brier_raw DOUBLE, ece_raw DOUBLE,
        log_loss_raw DOUBLE, base_rate_cal DOUBLE, auc_cal DOUBLE, brier_cal DOUBLE, ece_cal DOUBLE, log_loss_cal DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS ml.model_runs (mlflow_run_id VARCHAR NOT NULL, model_name VARCHAR, model_version VARCHAR,
        trained_at TIMESTAMP, data_start TIMESTAMP, data_end TIMESTAMP, n_rows BIGINT, n_folds INTEGER, metrics JSON,
        promotion_passed BOOLEAN, promotion_reasons JSON, promoted BOOLEAN, dagster_run_id VARCHAR, code_version VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS ml.options_scores (model_name VARCHAR NOT NULL, model_version VARCHAR,
        mlflow_run_id VARCHAR NOT NULL, date DATE NOT NULL, fold INTEGER, p_raw DOUBLE, p_cal DOUBLE, y DOUBLE, fwd_ret DOUBLE,
        label_end_date DATE)""",
    """CREATE TABLE IF NOT EXISTS ml.setup_meta_scores (model_name VARCHAR NOT NULL, model_version VARCHAR,
        mlflow_run_id VARCHAR NOT NULL, candidate_id VARCHAR NOT NULL, symbol VARCHAR, timeframe VARCHAR, ts BIGINT,
        exit_ts BIGINT, win DOUBLE, net_pct DOUBLE, fold INTEGER, p_raw DOUBLE, p_cal DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS backtest.runs (run_id VARCHAR NOT NULL, desk VARCHAR, strategy VARCHAR, sample VARCHAR,
        period_start TIMESTAMP, period_end TIMESTAMP, timeframe VARCHAR, universe JSON, params JSON, costs JSON, metrics JSON,
        benchmark JSON, per_symbol JSON, model_name VARCHAR, model_run_id VARCHAR, mlflow_run_id VARCHAR, code_version VARCHAR,
        dagster_run_id VARCHAR, created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS backtest.trades (run_id VARCHAR NOT NULL, trade_id BIGINT NOT NULL, symbol VARCHAR,
        direction INTEGER, signal_ts BIGINT, entry_ts BIGINT, exit_ts BIGINT, entry_time TIMESTAMP, exit_time TIMESTAMP,
        entry_price DOUBLE, exit_price DOUBLE, units DOUBLE, notional DOUBLE, fees DOUBLE, pnl DOUBLE, ret DOUBLE,
        exit_reason VARCHAR, mae DOUBLE, mfe DOUBLE, r_multiple DOUBLE, tp1_hit BOOLEAN, sl_initial DOUBLE, tp_initial DOUBLE,
        bars_held BIGINT, instrument VARCHAR, underlying_entry_price DOUBLE, underlying_exit_price DOUBLE)""",
    # columns added after the first release: a warehouse created by older code gets them (NULL in its old rows)
    # issue 16: the configuration hash a version was trained with (models.retrain; NULL in rows of older code)
    "ALTER TABLE ml.model_runs ADD COLUMN IF NOT EXISTS config_hash VARCHAR",
    "ALTER TABLE backtest.trades ADD COLUMN IF NOT EXISTS instrument VARCHAR",
    "ALTER TABLE backtest.trades ADD COLUMN IF NOT EXISTS underlying_entry_price DOUBLE",
    "ALTER TABLE backtest.trades ADD COLUMN IF NOT EXISTS underlying_exit_price DOUBLE",
    # issue 12 item 11: exit_price is the last fill; the TP1 partial fill and the size-weighted mean of all exit fills
    # have their own columns (added in place to a warehouse created before; old rows read NULL)
    *(
        f"ALTER TABLE backtest.trades ADD COLUMN IF NOT EXISTS {c} {t}"
        for c, t in (
            ("avg_exit_price", "DOUBLE"),
            ("tp1_price", "DOUBLE"),
            ("tp1_ts", "BIGINT"),
            ("leverage", "DOUBLE"),
        )
    ),
    # issue 15: every backtest run stores the number of configurations tried and its probabilistic / deflated Sharpe
    # ratio (pipeline.core.metrics, daily closes) as columns beside the metrics JSON; a warehouse created before gets
    # them in place (NULL in its old rows until the run is redone)
    *(
        f"ALTER TABLE backtest.runs ADD COLUMN IF NOT EXISTS {c} {t}"
        for c, t in (("n_trials", "INTEGER"), ("sharpe", "DOUBLE"), ("psr", "DOUBLE"), ("dsr", "DOUBLE"))
    ),
    """CREATE TABLE IF NOT EXISTS backtest.equity (run_id VARCHAR NOT NULL, ts BIGINT NOT NULL, equity DOUBLE, cash DOUBLE,
        position_value DOUBLE, gross_exposure DOUBLE, n_positions INTEGER, drawdown DOUBLE, benchmark_equity DOUBLE,
        open_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ts * 1000)) VIRTUAL)""",
    # issue 13 item 10: the file's size:mtime beside its content-hash fingerprint (hash again only when it changes);
    # a warehouse created before gets the column (NULL: the next run hashes each file once)
    "ALTER TABLE raw.ingest_checkpoints ADD COLUMN IF NOT EXISTS file_stat VARCHAR",
    # issue 13 item 9: the inputs failing validation NOW (a fixed input's rows are deleted by its next good ingest)
    """CREATE TABLE IF NOT EXISTS ops.input_errors (input VARCHAR, partition_key VARCHAR, locator VARCHAR, rule VARCHAR,
        message VARCHAR, detected_at TIMESTAMP)""",
    "CREATE TABLE IF NOT EXISTS ops.publish_log (published_at TIMESTAMP, fingerprint VARCHAR, tables INTEGER, path VARCHAR)",
    # issue 16: the notification outbox (warehouse/notifications.py; docs/decisions.md "Notifications and the outbox").
    # A real PRIMARY KEY (the table is small): enqueue is INSERT ... ON CONFLICT DO NOTHING; seq = enqueue order (messages
    # due at the same time go out in it). Times are naive UTC.
    # Created IF NOT EXISTS, so a warehouse made by older code gains both tables on its next read-write open.
    "CREATE SEQUENCE IF NOT EXISTS ops.notification_seq",
    """CREATE TABLE IF NOT EXISTS ops.notifications (dedup_key VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('ops.notification_seq'), kind VARCHAR NOT NULL,
        mode VARCHAR NOT NULL, payload JSON, text VARCHAR, plain_text VARCHAR, status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, next_attempt_at TIMESTAMP,
        attempt_id VARCHAR, attempt_started_at TIMESTAMP, maybe_sent BOOLEAN NOT NULL DEFAULT false, format VARCHAR,
        chat_id VARCHAR, last_error VARCHAR, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP, sent_at TIMESTAMP,
        telegram_message_id BIGINT)""",
    # every sendMessage request made (one row per HTTP request): the audit trail and the per-chat rate limit's memory
    """CREATE TABLE IF NOT EXISTS ops.notification_attempts (attempt_id VARCHAR NOT NULL, dedup_key VARCHAR NOT NULL,
        chat_id VARCHAR, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, format VARCHAR, outcome VARCHAR,
        http_status INTEGER, retry_after DOUBLE, retry_at TIMESTAMP, error VARCHAR, telegram_message_id BIGINT)""",
    # issue 16: the append-only signal log (a logged signal id is never rewritten: warehouse.paper.log_signals) and
    # the paper books per desk (warehouse.paper.write_step writes one step in one transaction). New tables only: a
    # warehouse created before gets them on its next read-write open.
    """CREATE TABLE IF NOT EXISTS signals.log (desk VARCHAR NOT NULL, signal_id VARCHAR NOT NULL, symbol VARCHAR,
        timeframe VARCHAR, ts BIGINT, first_seen TIMESTAMP, payload JSON, model_version VARCHAR, config_hash VARCHAR,
        open_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ts * 1000)) VIRTUAL)""",
    # issue 18: the alpha portfolio's targets, one row per asset per rebalance hour with the reason of its weight
    # (pipeline.core.alpha_portfolio.REASONS). A new table: a warehouse created before gets it on its next open.
    """CREATE TABLE IF NOT EXISTS signals.alpha_targets (ts BIGINT NOT NULL, symbol VARCHAR NOT NULL,
        target_weight DOUBLE, current_weight DOUBLE, rank INTEGER, exp_ret_net DOUBLE, regime VARCHAR, reason VARCHAR,
        open_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ts * 1000)) VIRTUAL)""",
    """CREATE TABLE IF NOT EXISTS paper.state (desk VARCHAR NOT NULL, version BIGINT NOT NULL, start_ts BIGINT,
        last_ts BIGINT, bars BIGINT, state JSON, config_hash VARCHAR, dagster_run_id VARCHAR, created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS paper.orders (desk VARCHAR NOT NULL, version BIGINT, signal_id VARCHAR NOT NULL,
        asset VARCHAR, signal_ts BIGINT, status VARCHAR NOT NULL, ts BIGINT, recorded_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS paper.trades (desk VARCHAR NOT NULL, version BIGINT, signal_id VARCHAR,
        asset VARCHAR NOT NULL, symbol VARCHAR, timeframe VARCHAR, signal_ts BIGINT, entry_ts BIGINT NOT NULL,
        exit_ts BIGINT, direction INTEGER, entry_price DOUBLE, exit_price DOUBLE, avg_exit_price DOUBLE, units DOUBLE,
        notional DOUBLE, fees DOUBLE, pnl DOUBLE, ret DOUBLE, exit_reason VARCHAR, tp1_hit BOOLEAN, tp1_price DOUBLE,
        tp1_ts BIGINT, sl_initial DOUBLE, tp_initial DOUBLE, leverage DOUBLE, r_multiple DOUBLE, mae DOUBLE,
        mfe DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS paper.positions (desk VARCHAR NOT NULL, version BIGINT, signal_id VARCHAR,
        asset VARCHAR NOT NULL, symbol VARCHAR, timeframe VARCHAR, signal_ts BIGINT, entry_ts BIGINT, direction INTEGER,
        entry_price DOUBLE, mark DOUBLE, units DOUBLE, notional DOUBLE, fees DOUBLE, open_pnl DOUBLE, tp1_hit BOOLEAN,
        sl_initial DOUBLE, tp_initial DOUBLE, leverage DOUBLE, as_of_ts BIGINT)""",
    """CREATE TABLE IF NOT EXISTS paper.equity (desk VARCHAR NOT NULL, version BIGINT, ts BIGINT NOT NULL,
        equity DOUBLE, cash DOUBLE, position_value DOUBLE, gross_exposure DOUBLE, n_positions INTEGER,
        engine_state VARCHAR, open_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ts * 1000)) VIRTUAL)""",
]

#: tables copied into the read-only serving snapshot and exported to Parquet
#: the pipeline's status at the last publish (``pipeline.status``), published with the snapshot but left out of its
#: fingerprint (a new run alone does not republish)
STATUS_TABLES = ["ops.run_status", "ops.check_status"]
SERVING_TABLES = [
    "market.ohlcv",
    "market.onchain_daily",
    "market.onchain_columns",
    "market.sentiment_daily",
    "features.technical",
    "regimes.market",
    "features.alpha",
    "regimes.alpha_market",
    "signals.alpha_scores",
    "raw.ingest_checkpoints",
    "ops.input_errors",  # current input failures (issue 13 item 9); read by the API's health
    "ml.predictions",
    "ml.folds",
    "ml.model_runs",
    "backtest.runs",
    "backtest.trades",
    "backtest.equity",
    "features.onchain",
    "features.onchain_source_agreement",
    "ml.options_scores",
    "signals.options_daily",
    "signals.options_trades",
    "signals.setup_candidates",
    "ml.setup_meta_scores",
    "signals.setup_thresholds",
    "signals.setups",
    "signals.log",
    "signals.alpha_targets",
    "paper.state",
    "paper.orders",
    "paper.trades",
    "paper.positions",
    "paper.equity",
]
