"""The single Dagster code location: ``defs`` (loaded by ``dagster dev -w workspace.yaml``).

Assets are loaded per module of each shared layer and desk package, so a new asset cannot be forgotten; jobs are
named in :mod:`pipeline.jobs`, schedules in :mod:`pipeline.schedules`, resources built here from the configuration.
"""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg

import assets
from pipeline.config import TraderConfig, settings
from pipeline.jobs import JOBS
from pipeline.schedules import schedules
from pipeline.sensors import sensors
from resources.exchange import ExchangeSource
from resources.files import FilesSource
from resources.mlflow_tracking import MlflowTracking
from resources.notifier import build_notifier
from resources.sheets import SheetsSource
from resources.warehouse import WarehouseResource


def asset_modules() -> list:
    """Every module under ``assets/`` (shared layers and desk packages), imported."""
    return [importlib.import_module(m.name) for m in pkgutil.walk_packages(assets.__path__, "assets.") if not m.ispkg]


def build_resources(cfg: TraderConfig) -> dict:
    """Resources from the resolved configuration (tests pass a config pointing at tmp paths)."""
    return {
        "warehouse": WarehouseResource(
            path=cfg.warehouse.path, serving_path=cfg.warehouse.serving_path, exports_dir=cfg.warehouse.exports_dir
        ),
        "files": FilesSource(data_dir=cfg.data_dir),
        "exchange": ExchangeSource(
            exchange_id=cfg.exchange.id,
            rate_limit_ms=cfg.exchange.rate_limit_ms,
            max_retries=cfg.exchange.max_retries,
            page_limit=cfg.exchange.page_limit,
            market_type=cfg.exchange.market_type,
            api_base_url=cfg.exchange.api_base_url,
        ),
        "sheets": SheetsSource(spreadsheet_key=cfg.onchain.sheet),
        "mlflow": MlflowTracking(
            tracking_uri=cfg.mlflow.tracking_uri,
            artifact_location=cfg.mlflow.artifact_location,
            ui_url=cfg.mlflow.ui_url,
        ),
        "notifier": build_notifier(cfg.notify.telegram),
    }


ALL_ASSETS = dg.load_assets_from_modules(asset_modules(), include_specs=True)
#: checks defined apart from their asset (``@dg.asset_check``; e.g. ``paper_matches_backtest``, which a job selects on
#: its own schedule): the checks declared in an asset's ``check_specs`` come with ``ALL_ASSETS``
ALL_CHECKS = dg.load_asset_checks_from_modules(asset_modules())

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=JOBS,
    schedules=schedules(settings()),
    sensors=sensors(settings()),
    resources=build_resources(settings()),
    executor=dg.in_process_executor,
)
