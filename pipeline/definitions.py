"""The single Dagster code location: ``defs`` (loaded by ``dagster dev -w workspace.yaml``)."""
from __future__ import annotations

import dagster as dg

from assets.features import features_technical, regimes_market
from assets.ingest import EXTERNAL_EXCHANGE, EXTERNAL_FILES, EXTERNAL_SHEET, raw_ohlcv, raw_onchain_metrics
from assets.market import market_ohlcv, market_onchain_daily, market_sentiment_daily
from assets.backtest import backtest_baseline
from assets.ml import ml_baseline_direction, ml_baseline_direction_champion, ml_baseline_direction_evaluation
from assets.ops import serving_snapshot
from assets.options_desk import backtest_options_desk, features_onchain, options_signals
from assets.options_models import ml_options_direction, ml_options_direction_champion
from assets.setup_meta import SETUP_META, SETUP_META_CHAMPION, SETUP_META_EVALUATION, ml_setup_meta, ml_setup_meta_champion, ml_setup_meta_evaluation
from assets.setup_scanner import SETUP_CANDIDATES, signals_setup_candidates
from assets.setup_signals import SETUP_BACKTEST, SETUP_THRESHOLDS, SETUPS, backtest_setup_scanner, signals_setup_thresholds, signals_setups
from pipeline.config import TraderConfig, settings
from resources.exchange import ExchangeSource
from resources.files import FilesSource
from resources.mlflow_tracking import MlflowTracking
from resources.sheets import SheetsSource
from resources.warehouse import WarehouseResource

ALL_ASSETS = [EXTERNAL_FILES, EXTERNAL_EXCHANGE, EXTERNAL_SHEET, raw_ohlcv, raw_onchain_metrics, market_ohlcv,
              market_onchain_daily, market_sentiment_daily, features_technical, regimes_market, ml_baseline_direction,
              ml_baseline_direction_evaluation, ml_baseline_direction_champion, backtest_baseline, features_onchain, ml_options_direction,
              ml_options_direction_champion, options_signals, backtest_options_desk, signals_setup_candidates,
              ml_setup_meta, ml_setup_meta_evaluation, ml_setup_meta_champion, signals_setup_thresholds, signals_setups,
              backtest_setup_scanner, serving_snapshot]

main_job = dg.define_asset_job("main_job", selection=dg.AssetSelection.all(),
                               description="Everything: ingest -> market -> features -> regimes -> ml -> backtest -> serving snapshot.")
train_job = dg.define_asset_job("train_job", selection=dg.AssetSelection.groups("ml"),
                                description="Train, register and (if the promotion gate passes) promote the baseline model.")
backtest_job = dg.define_asset_job("backtest_job", selection=dg.AssetSelection.groups("backtest"),
                                   description="Backtest the baseline strategy on the stored out-of-sample predictions.")
ingest_job = dg.define_asset_job("ingest_job", selection=dg.AssetSelection.keys(
    ["raw", "ohlcv"], ["raw", "onchain_metrics"], ["market", "sentiment_daily"]), description="Sources only.")

# setup scanner (seed 002): live scan, and the weekly train -> calibrate -> tune chain
setup_scan_job = dg.define_asset_job("setup_scan_job", selection=dg.AssetSelection.keys(SETUP_CANDIDATES, SETUPS),
                                     description="Scan the latest closed candles, gate with the champion and tuned thresholds, "
                                                 "execute (the seed's scan_signals + execute_signals).")
setup_train_job = dg.define_asset_job("setup_train_job", selection=dg.AssetSelection.keys(SETUP_META),
                                      description="Retrain the setup meta-model (walk-forward, isotonic, MLflow version).")
setup_calibrate_job = dg.define_asset_job("setup_calibrate_job", selection=dg.AssetSelection.keys(SETUP_META_EVALUATION, SETUP_META_CHAMPION),
                                          description="Promotion gate on the latest version's calibrated OOS scores; promote if it passes.")
setup_tune_job = dg.define_asset_job("setup_tune_job", selection=dg.AssetSelection.keys(SETUP_THRESHOLDS, SETUPS, SETUP_BACKTEST),
                                     description="Re-tune the thresholds, re-gate and re-simulate the signals, refresh the report.")
SETUP_JOBS = [setup_scan_job, setup_train_job, setup_calibrate_job, setup_tune_job]


def setup_schedules(cfg: TraderConfig) -> list[dg.ScheduleDefinition]:
    """Weekly (UTC) train -> calibrate -> tune schedules of ``setup_scanner.auto``; RUNNING only when enabled."""
    a = cfg.setup_scanner.auto
    status = dg.DefaultScheduleStatus.RUNNING if a.enabled else dg.DefaultScheduleStatus.STOPPED
    return [dg.ScheduleDefinition(name=f"{job.name.replace('_job', '')}_weekly", job=job, cron_schedule=cron,
                                  execution_timezone="UTC", default_status=status)
            for job, cron in ((setup_train_job, a.train_cron), (setup_calibrate_job, a.calibrate_cron),
                              (setup_tune_job, a.tune_cron))]


def build_resources(cfg: TraderConfig) -> dict:
    """Resources from the resolved configuration (tests pass a config pointing at tmp paths)."""
    return {
        "warehouse": WarehouseResource(path=cfg.warehouse.path, serving_path=cfg.warehouse.serving_path,
                                       exports_dir=cfg.warehouse.exports_dir),
        "files": FilesSource(data_dir=cfg.data_dir),
        "exchange": ExchangeSource(exchange_id=cfg.exchange.id, rate_limit_ms=cfg.exchange.rate_limit_ms,
                                   max_retries=cfg.exchange.max_retries, page_limit=cfg.exchange.page_limit),
        "sheets": SheetsSource(spreadsheet_key=cfg.onchain.sheet),
        "mlflow": MlflowTracking(tracking_uri=cfg.mlflow.tracking_uri, artifact_location=cfg.mlflow.artifact_location),
    }


defs = dg.Definitions(assets=ALL_ASSETS, jobs=[main_job, ingest_job, train_job, backtest_job, *SETUP_JOBS],
                      schedules=setup_schedules(settings()), resources=build_resources(settings()),
                      executor=dg.in_process_executor)
