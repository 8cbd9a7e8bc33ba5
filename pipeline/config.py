"""Project configuration: ``trader.yaml`` validated with pydantic, plus environment overrides.

Dagster-free so that pure code, resources, the CLI and tests share one source of truth.
Resolution order for every path: environment variable > ``trader.yaml`` > default.

Environment variables:
    TRADER_CONFIG      path of the YAML file (default: ``<repo>/trader.yaml``)
    TRADER_DATA_DIR    data folder; when set, ``source`` is forced to ``files``
    TRADER_WAREHOUSE   DuckDB warehouse file
    MLFLOW_TRACKING_URI  MLflow tracking URI
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.evaluation import PromotionCriteria
from pipeline.core.onchain_signals import OnchainRegimeParams
from pipeline.core.options_fusion import OptionsDeskParams
from pipeline.core.setup_gating import GatingParams
from pipeline.core.setups import RiskParams, SetupParams
from pipeline.core.timeframes import TIMEFRAME_MS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "trader.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UniverseConfig(_Strict):
    symbols: list[str] = Field(
        default_factory=lambda: [f"{b}/USDT" for b in
                                 ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]],
        description="Symbols as BASE/QUOTE (ccxt form). Partition keys use BASE-QUOTE.")
    timeframes: list[str] = Field(
        default_factory=lambda: ["1m", "5m", "15m", "1h", "4h", "1d"],
        description="Candle timeframes materialised in market.ohlcv / features / regimes. "
                    "Each is ingested natively when the source has it, otherwise resampled.")

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        for s in v:
            if s.count("/") != 1 or any(c in s for c in "|,[]-"):
                raise ValueError(f"symbol {s!r} must look like BASE/QUOTE")
        return v

    @field_validator("timeframes")
    @classmethod
    def _tfs(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in TIMEFRAME_MS]
        if bad:
            raise ValueError(f"unsupported timeframes {bad}; supported: {sorted(TIMEFRAME_MS)}")
        return sorted(set(v), key=TIMEFRAME_MS.__getitem__)


class ExchangeConfig(_Strict):
    id: str = Field("binance", description="ccxt exchange id (also the folder name under data_dir/ohlcv).")
    rate_limit_ms: int | None = Field(None, description="Minimum ms between requests; null = ccxt default.")
    max_retries: int = Field(5, ge=0, description="Retries with exponential backoff on network/rate-limit errors.")
    page_limit: int | None = Field(None, description="Candles per request; null = the exchange's limit.")
    since: str = Field("2024-01-01", description="UTC date of the first candle for a cold exchange sync.")


class WarehouseConfig(_Strict):
    path: str = Field("warehouse/data/warehouse.duckdb", description="The writer's DuckDB file.")
    serving_path: str = Field("warehouse/data/serving.duckdb",
                              description="Read-only snapshot published after each run, for people to query.")
    exports_dir: str = Field("warehouse/data/exports", description="Parquet exports of the serving tables.")


class MlflowConfig(_Strict):
    tracking_uri: str | None = Field(None, description="Absolute MLflow tracking URI; null = sqlite under warehouse/data/mlflow.")
    artifact_location: str | None = Field(None, description="Absolute artifact folder; null = warehouse/data/mlflow/artifacts.")


class ResampleConfig(_Strict):
    drop_incomplete: bool = Field(False, description="Drop resampled periods with missing source bars "
                                                     "(default: keep them, flagged by bar_count < expected_bars).")


class FeaturesConfig(_Strict):
    warmup_bars: int = Field(3000, ge=2800, description="Bars of history re-read before new bars on incremental "
                                                       "runs (EMA-200 seed decays below 1e-12 after ~2,800 bars).")


class RegimeConfig(_Strict):
    adx_sideways: float = Field(20.0, description="ADX below this => trend regime 'sideways'.")
    adx_moderate: float = Field(20.0, description="ADX >= this => strength 'moderate' (below: 'weak').")
    adx_strong: float = Field(25.0, description="ADX >= this => strength 'strong'.")
    adx_very_strong: float = Field(50.0, description="ADX >= this => strength 'very_strong'.")
    vol_window: int = Field(500, ge=20, description="Bars in the rolling percentile window of NATR (ATR/close).")
    vol_low_pct: float = Field(0.33, description="NATR percentile below this => volatility 'low'.")
    vol_high_pct: float = Field(0.67, description="NATR percentile above this => volatility 'high'.")
    stability_window: int = Field(20, ge=2, description="Bars over which regime stability is measured.")


class OnchainConfig(_Strict):
    publication_lag_hours: float = Field(0, ge=0, description="Hours after D+1 00:00 UTC before day D's "
                                                               "on-chain/sentiment values are usable.")
    sheet: str | None = Field(None, description="Google Sheet key with on-chain columns (sheets source); null = off.")


class ChecksConfig(_Strict):
    max_gap_bars: int = Field(48, description="A single gap longer than this many bars fails the gap check.")
    max_missing_fraction: float = Field(0.01, description="Missing bars / expected bars above this fails the gap check.")
    max_staleness_bars: int = Field(2, description="Warehouse may trail the source's last closed candle by this many bars.")
    min_onchain_coverage: float = Field(0.95, description="Required coverage of core on-chain columns since 2011.")


class LabelConfig(_Strict):
    tp_atr: float = Field(2.0, gt=0, description="Triple-barrier take-profit, ATR(14) multiples from the next open.")
    sl_atr: float = Field(1.5, gt=0, description="Triple-barrier stop-loss, ATR(14) multiples.")
    max_bars: int = Field(24, ge=1, description="Vertical barrier (time stop), bars after entry.")


class WalkForwardConfig(_Strict):
    train_window: str = Field("365d", description="Training window: bars (e.g. 8760) or a duration (365d, 12w, 48h).")
    test_window: str = Field("120d", description="Test window per fold (bars or duration).")
    purge: str = Field("24", description="Extra purge beyond label overlap (bars or duration).")
    embargo: str = Field("24", description="Embargo/gap between training and each test fold (bars or duration).")
    expanding: bool = Field(True, description="Expanding (true) or rolling (false) training window.")
    min_calibration_rows: int = Field(2000, description="Earlier out-of-fold rows needed before a fold is calibrated.")


class BaselineModelConfig(_Strict):
    name: str = Field("baseline_direction", description="Registered MLflow model name.")
    train_symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"], description="Symbols pooled for training.")
    timeframe: str = Field("1h", description="Candle timeframe of the model and its backtest.")
    kind: Literal["lightgbm", "xgboost", "logreg"] = Field("lightgbm", description="Estimator.")
    params: dict = Field(default_factory=dict, description="Hyper-parameters over models/trainers.py DEFAULTS.")
    seed: int = 42
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    label: LabelConfig = Field(default_factory=LabelConfig)
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    promotion: PromotionCriteria = Field(default_factory=PromotionCriteria)


class CostsConfig(_Strict):
    fee_taker_bps: float = Field(10.0, ge=0, description="Taker fee, bps of notional (Binance spot default 0.10 %).")
    fee_maker_bps: float = Field(10.0, ge=0, description="Maker fee, bps of notional.")
    slippage_bps: float = Field(2.0, ge=0, description="Slippage on market and stop fills, bps, against the trade.")
    latency_bars: int = Field(0, ge=0, description="Bars between decision and execution beyond the next open.")


class BacktestConfig(_Strict):
    strategy: str = Field("baseline_long_flat", description="Name recorded in backtest.runs.")
    symbols: list[str] | None = Field(None, description="Universe of the baseline backtest (null = universe.symbols).")
    enter_threshold: float = Field(0.45, ge=0, le=1, description="Go long when calibrated p(TP first) >= this.")
    sl_atr: float | None = Field(None, description="Stop, ATR multiples (null = the label's sl_atr).")
    tp_atr: float | None = Field(None, description="Target, ATR multiples (null = the label's tp_atr).")
    max_bars: int | None = Field(None, description="Time stop in bars (null = the label's max_bars).")
    init_cash: float = Field(100_000.0, gt=0, description="Starting capital, quote currency, split equally per symbol.")
    costs: CostsConfig = Field(default_factory=CostsConfig)
    resolve_intrabar_with: str | None = Field("15m", description="Finer timeframe used when SL and TP share a bar (null = stop first).")


class ResearchConfig(_Strict):
    baseline: BaselineModelConfig = Field(default_factory=BaselineModelConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)


class OptionsModelsConfig(_Strict):
    """``p_long`` / ``p_short`` (models/options_direction.py): labels, estimator, walk-forward, promotion, signals."""

    names: dict[str, str] = Field(default_factory=lambda: {"p_long": "options_p_long", "p_short": "options_p_short"},
                                  description="Registered MLflow model name per score.")
    horizon_days: int = Field(30, ge=1, description="Label horizon in days (the primary options' DTE scale).")
    long_min_return: float = Field(0.05, ge=0, description="p_long's label: BTC return over the horizon >= +this (fraction).")
    short_min_return: float = Field(0.05, ge=0, description="p_short's label: BTC return over the horizon <= -this (fraction).")
    start_date: str = Field("2012-01-01", description="First day of the dataset (on-chain prices before are thin).")
    kind: Literal["lightgbm", "xgboost", "logreg"] = "lightgbm"
    params: dict = Field(default_factory=lambda: {"n_estimators": 60, "learning_rate": 0.03, "num_leaves": 3,
                                                  "min_child_samples": 300, "colsample_bytree": 0.5},
                         description="Heavily regularised: ~5,000 daily rows whose 30-day labels overlap.")
    seed: int = 42
    calibration: Literal["isotonic", "sigmoid"] = Field("sigmoid", description="Platt scaling: isotonic overfits the "
                                                                                "few effective daily samples.")
    walk_forward: WalkForwardConfig = Field(default_factory=lambda: WalkForwardConfig(
        train_window="1460d", test_window="90d", purge="0", embargo="0", expanding=True, min_calibration_rows=365))
    promotion: PromotionCriteria = Field(default_factory=lambda: PromotionCriteria(min_auc=0.52, max_ece=0.05, min_oos_rows=1000))
    call_threshold: float = Field(0.5, ge=0, le=1, description="signal_option_call = p_long >= this.")
    put_threshold: float = Field(0.5, ge=0, le=1, description="signal_option_put = p_short >= this.")


class OptionsDeskConfig(_Strict):
    regimes: OnchainRegimeParams = Field(default_factory=OnchainRegimeParams)
    decisions: OptionsDeskParams = Field(default_factory=OptionsDeskParams)
    models: OptionsModelsConfig = Field(default_factory=OptionsModelsConfig)


class SetupExecutionConfig(_Strict):
    tp1_fraction: float = Field(0.5, ge=0, le=1, description="Share closed at TP1.")
    breakeven_after_tp1: bool = Field(True, description="Move the stop to entry after TP1.")
    trail_atr: float = Field(1.0, ge=0, description="ATR trail after TP1 (0 = off).")


class SetupMetaConfig(_Strict):
    """``setup_scanner.meta`` (seed ``models.meta``): the XGBoost p(win) precision filter (models/setup_meta.py)."""

    enabled: bool = Field(True, description="false = no p(win) gate: every valid candidate becomes a signal (rules only).")
    name: str = Field("setup_meta", description="Registered MLflow model name; gating uses its @champion.")
    kind: Literal["lightgbm", "xgboost", "logreg"] = "xgboost"
    params: dict = Field(default_factory=dict, description="Over models/trainers.py DEFAULTS['xgboost'].")
    seed: int = 42
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    walk_forward: WalkForwardConfig = Field(default_factory=lambda: WalkForwardConfig(
        train_window="365d", test_window="180d", purge="0", embargo="1d", expanding=True, min_calibration_rows=2000))
    promotion: PromotionCriteria = Field(default_factory=lambda: PromotionCriteria(min_oos_rows=5000))


class SetupAutomationConfig(_Strict):
    """``setup_scanner.auto`` (seed ``auto``): weekly train -> calibrate -> tune as Dagster schedules (UTC)."""

    enabled: bool = Field(False, description="Schedules start RUNNING when true (else STOPPED; toggle in the UI).")
    train_cron: str = Field("0 1 * * 1", description="Mondays 01:00 UTC: retrain the meta-model.")
    calibrate_cron: str = Field("30 1 * * 1", description="Mondays 01:30 UTC: promotion gate on the calibrated scores.")
    tune_cron: str = Field("0 2 * * 1", description="Mondays 02:00 UTC: re-tune the thresholds, re-gate and re-simulate.")


class SetupScannerConfig(_Strict):
    """``setup_scanner`` (seed 002): scanned timeframes, setup rules, risk, gating and execution."""

    timeframes: list[str] = Field(default_factory=lambda: ["15m", "1h"])
    symbols: list[str] | None = Field(None, description="null = universe.symbols")
    signals: SetupParams = Field(default_factory=SetupParams)
    risk: RiskParams = Field(default_factory=RiskParams)
    gating: GatingParams = Field(default_factory=GatingParams)
    execution: SetupExecutionConfig = Field(default_factory=SetupExecutionConfig)
    meta: SetupMetaConfig = Field(default_factory=SetupMetaConfig)
    auto: SetupAutomationConfig = Field(default_factory=SetupAutomationConfig)
    tune_every_days: int = Field(7, ge=1, description="Cadence of the point-in-time threshold versions (weekly = seed).")
    init_cash: float = Field(100_000.0, gt=0, description="Backtest capital, quote currency, split equally per symbol x timeframe.")


class TraderConfig(_Strict):
    """The whole configuration (``trader.yaml``)."""

    universe: UniverseConfig = Field(default_factory=UniverseConfig)
    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    source: Literal["files", "exchange"] = Field("files", description="Where candles come from.")
    data_dir: str = Field("../shared/data", description="Folder laid out like shared/data (ohlcv/, onchain/, sentiment/).")
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    resample: ResampleConfig = Field(default_factory=ResampleConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    regimes: RegimeConfig = Field(default_factory=RegimeConfig)
    onchain: OnchainConfig = Field(default_factory=OnchainConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    research: ResearchConfig = Field(default_factory=ResearchConfig)
    options_desk: OptionsDeskConfig = Field(default_factory=OptionsDeskConfig)
    setup_scanner: SetupScannerConfig = Field(default_factory=SetupScannerConfig)

    # resolved absolute paths -------------------------------------------------
    def resolve(self, base: Path) -> "TraderConfig":
        """Return a copy with env overrides applied and every path absolute (relative to ``base``)."""
        c = self.model_copy(deep=True)
        if os.environ.get("TRADER_DATA_DIR"):
            c.data_dir = os.environ["TRADER_DATA_DIR"]
            c.source = "files"
        if os.environ.get("TRADER_WAREHOUSE"):
            c.warehouse.path = os.environ["TRADER_WAREHOUSE"]
            wh = Path(c.warehouse.path)
            c.warehouse.serving_path = str(wh.with_name(wh.stem + ".serving.duckdb"))
            c.warehouse.exports_dir = str(wh.with_name(wh.stem + "_exports"))
        if os.environ.get("MLFLOW_TRACKING_URI"):
            c.mlflow.tracking_uri = os.environ["MLFLOW_TRACKING_URI"]

        def absolute(p: str) -> str:
            q = Path(os.path.expanduser(p))
            return str(q if q.is_absolute() else (base / q).resolve())

        c.data_dir = absolute(c.data_dir)
        c.warehouse.path = absolute(c.warehouse.path)
        c.warehouse.serving_path = absolute(c.warehouse.serving_path)
        c.warehouse.exports_dir = absolute(c.warehouse.exports_dir)
        mlroot = Path(c.warehouse.path).parent / "mlflow"
        c.mlflow.tracking_uri = c.mlflow.tracking_uri or f"sqlite:///{mlroot / 'mlflow.db'}"
        c.mlflow.artifact_location = absolute(c.mlflow.artifact_location or str(mlroot / "artifacts"))
        return c


def load_config(path: str | os.PathLike | None = None) -> TraderConfig:
    """Load, validate and resolve the configuration.

    Raises:
        FileNotFoundError: the config file does not exist.
        pydantic.ValidationError: a field is unknown or invalid (message names the field).
    """
    p = Path(path or os.environ.get("TRADER_CONFIG") or DEFAULT_CONFIG).resolve()
    raw = yaml.safe_load(p.read_text()) or {}
    return TraderConfig.model_validate(raw).resolve(p.parent)


@lru_cache(maxsize=1)
def settings() -> TraderConfig:
    """Process-wide configuration (cached; tests call ``settings.cache_clear()`` after changing env)."""
    return load_config()
