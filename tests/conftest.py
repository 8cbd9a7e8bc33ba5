"""Test configuration: a small universe over slices of the real data in ``shared/data``.

Real data is read in place from ``TRADER_DATA_DIR`` (default ``../shared/data``); tests that need a
data folder get one in a temporary directory holding **slices** of the real files (never written
into the repo). ``TRADER_CONFIG`` is pointed at a test config *before* the pipeline is imported,
because partitions are built from the configuration at import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.pop("TRADER_DATA_DIR", None) or (REPO.parent / "shared" / "data")).resolve()
os.environ.pop("TRADER_WAREHOUSE", None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

SLICE_ROOT = Path(tempfile.mkdtemp(prefix="trader_test_data_"))
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
# (timeframe, folder, first, last) — windows chosen to contain real gaps (1h: 2019-03-12 +6, 2019-05-15 +10;
# 15m: 2023-03-24 +5) and both 1m windows of BTC
WINDOWS = [
    ("1h", "binance", "2019-02-01", "2019-06-30 23:00"),
    ("15m", "binance", "2023-03-01", "2023-04-10"),
    ("1d", "binance", "2018-01-01", "2019-12-31"),
    ("1m", "binance", "2025-05-20", "2025-05-23 23:59"),
    ("1m", "binance_1m_2026-03", "2026-03-24", "2026-03-25 23:59"),
]


def real_ohlcv(symbol: str, timeframe: str, folder: str = "binance") -> pd.DataFrame:
    """Full real candle file as a DataFrame (``timestamp`` renamed to ``ts``)."""
    p = SHARED / "ohlcv" / folder / f"{symbol.replace('/', '_')}-{timeframe}.csv.gz"
    return pd.read_csv(p).rename(columns={"timestamp": "ts"})


def _ms(s: str) -> int:
    return int(pd.Timestamp(s, tz="UTC").timestamp() * 1000)


def _build_slices() -> None:
    for sym in SYMBOLS:
        for tf, folder, a, b in WINDOWS:
            src = SHARED / "ohlcv" / folder / f"{sym.replace('/', '_')}-{tf}.csv.gz"
            if not src.exists():
                continue
            df = pd.read_csv(src)
            df = df[(df["timestamp"] >= _ms(a)) & (df["timestamp"] <= _ms(b))]
            (SLICE_ROOT / "ohlcv" / folder).mkdir(parents=True, exist_ok=True)
            df.to_csv(SLICE_ROOT / "ohlcv" / folder / src.name, index=False)
    for sub in ("onchain", "sentiment"):  # small files: linked, read in place
        (SLICE_ROOT / sub).mkdir(parents=True, exist_ok=True)
        for f in (SHARED / sub).iterdir():
            (SLICE_ROOT / sub / f.name).symlink_to(f)


_build_slices()
_CONFIG = SLICE_ROOT / "trader.test.yaml"
_CONFIG.write_text(f"""
universe:
  symbols: [BTC/USDT, ETH/USDT]
  timeframes: [1m, 5m, 15m, 1h, 4h, 1d]
source: files
data_dir: {SLICE_ROOT}
warehouse:
  path: {SLICE_ROOT}/default.duckdb
regimes:
  vol_window: 100
checks:
  max_gap_bars: 48
research:
  baseline:
    params: {{n_estimators: 60}}
    walk_forward: {{train_window: 60d, test_window: 20d, purge: "24", embargo: "24", min_calibration_rows: 300}}
    promotion: {{min_auc: 0.45, max_ece: 0.2, require_brier_below_base: false, min_oos_rows: 300}}
options_desk:
  models:
    params: {{n_estimators: 20, num_leaves: 3, min_child_samples: 200}}
    walk_forward: {{train_window: 1460d, test_window: 365d, purge: "0", embargo: "0", min_calibration_rows: 365}}
    promotion: {{min_auc: 0.3, max_ece: 0.5, require_brier_below_base: false, min_oos_rows: 300}}
setup_scanner:
  meta:
    params: {{n_estimators: 40}}
    walk_forward: {{train_window: 30d, test_window: 30d, purge: "0", embargo: "0", min_calibration_rows: 100}}
    promotion: {{min_auc: 0.3, max_ece: 0.5, require_brier_below_base: false, min_oos_rows: 50}}
  gating: {{min_closed_samples: 10, window_days: 60, target_winrate_pct: 30}}
alpha_portfolio:  # two symbols only: a 2-asset "rank IC" and a gate that passes, so the chain runs through @champion
  model:
    h6:
      min_assets: 2
      params: {{n_estimators: 10, num_leaves: 7, min_child_samples: 50}}
      walk_forward: {{train_window: 30d, test_window: 30d, purge: "0", embargo: "6", min_calibration_rows: 100}}
      promotion: {{min_ic: -1.0, min_ic_t: -100.0, min_oos_hours: 1}}
    h24:
      min_assets: 2
      params: {{n_estimators: 10, num_leaves: 7, min_child_samples: 50}}
      walk_forward: {{train_window: 30d, test_window: 30d, purge: "0", embargo: "24", min_calibration_rows: 100}}
      promotion: {{min_ic: -1.0, min_ic_t: -100.0, min_oos_hours: 1}}
""")
os.environ["TRADER_CONFIG"] = str(_CONFIG)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def onchain_inputs(shared_data):
    """The real on-chain daily table (all vendors, normalised) and Fear & Greed, read in place."""
    import pandas as pd

    from pipeline.core.onchain import ONCHAIN_SOURCES, normalise_fear_greed, normalise_onchain, wide_to_long

    longs = [
        wide_to_long(pd.read_csv(shared_data / "onchain" / sf.filename), sf.source, sf.date_column)
        for sf in ONCHAIN_SOURCES
    ]
    daily, _ = normalise_onchain(pd.concat(longs, ignore_index=True))
    fng = normalise_fear_greed(pd.read_csv(shared_data / "sentiment" / "fear_greed_daily.csv.gz"), "fng")
    return daily, fng


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A private, writable copy of the sliced data folder (for tests that append or corrupt files)."""
    d = tmp_path / "data"
    shutil.copytree(SLICE_ROOT, d, symlinks=True, ignore=shutil.ignore_patterns("*.yaml", "*.duckdb*"))
    return d


def _resources(root: Path, data_dir: Path) -> dict:
    """The pipeline's resources with the warehouse (``root/wh``) and MLflow store (``root/mlflow``) under ``root``."""
    from pipeline.config import settings
    from pipeline.definitions import build_resources

    cfg = settings().model_copy(deep=True)
    cfg.data_dir = str(data_dir)
    cfg.warehouse.path = str(root / "wh" / "warehouse.duckdb")
    cfg.warehouse.serving_path = str(root / "wh" / "serving.duckdb")
    cfg.warehouse.exports_dir = str(root / "wh" / "exports")
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(root / "mlflow" / "artifacts")
    return build_resources(cfg)


@pytest.fixture
def resources(tmp_path: Path, data_dir: Path) -> dict:
    return _resources(tmp_path, data_dir)


@pytest.fixture
def instance():
    """An in-memory Dagster instance, for tests of the assets rather than of the instance (run storage, pools, run
    recovery): no sqlite files to create and no event written to disk (a no-op run of the data chain: 51 s instead
    of 74-85 s with ``dg.instance_for_test()``, measured on the shared machine under load). The assets never read the instance (their state is in the warehouse)."""
    import dagster as dg

    return dg.DagsterInstance.ephemeral()


def data_chain_selection():
    """The data chain: everything but the ``ml``/``backtest`` layers, the on-demand assets and the setup scanner's
    model-gated assets (ingest → market → features → regimes → on-chain → options signals → candidates → snapshot)."""
    import dagster as dg

    from assets.keys import SETUP_THRESHOLDS, SETUPS
    from pipeline.jobs import ON_DEMAND

    return (
        dg.AssetSelection.all()
        - dg.AssetSelection.key_prefixes("ml", "backtest")
        - ON_DEMAND
        - dg.AssetSelection.keys(SETUP_THRESHOLDS, SETUPS)
    )


@pytest.fixture(scope="session")
def data_chain_build(tmp_path_factory):
    """One cold run of :func:`data_chain_selection` over a copy of the slices, **once per session** (tests copy its warehouse through :func:`built_warehouse` instead of rebuilding it).

    Returns ``(warehouse folder, the run's ExecuteInProcessResult)``; the result is read-only for every test.
    """
    import dagster as dg

    from pipeline.definitions import ALL_ASSETS
    from pipeline.partitions import full_range_tags

    root = tmp_path_factory.mktemp("data_chain")
    d = root / "data"
    shutil.copytree(SLICE_ROOT, d, symlinks=True, ignore=shutil.ignore_patterns("*.yaml", "*.duckdb*"))
    result = dg.materialize(
        ALL_ASSETS,
        resources=_resources(root, d),
        instance=dg.DagsterInstance.ephemeral(),
        tags=full_range_tags(),
        raise_on_error=False,
        selection=data_chain_selection(),
    )
    assert result.success
    return root / "wh", result


@pytest.fixture
def built_warehouse(data_chain_build, resources, tmp_path):
    """``resources``' warehouse folder holding a copy of the session's data-chain warehouse; returns the result of
    the run that built it. ``data_dir`` is a fresh copy of the same slices (same bytes and mtimes), so the next run
    sees unchanged inputs exactly as a second run on the original warehouse would."""
    wh, result = data_chain_build
    shutil.copytree(wh, Path(resources["warehouse"].path).parent, symlinks=True, dirs_exist_ok=True)
    return result


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SLICE_ROOT, ignore_errors=True)
