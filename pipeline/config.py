"""Project configuration: ``trader.yaml`` validated with pydantic, plus environment overrides.

Dagster-free so that pure code, resources, the CLI and tests share one source of truth. This module assembles the
sections: the infrastructure ones (universe, exchange, warehouse, MLflow, paths, checks) are defined here; every rule
section is the parameter class of the pure code that applies it (``pipeline/core``, ``models``), imported here and
never the other way round. Every class derives from :class:`pipeline.core.params.Params` (unknown keys are errors).
Resolution order for every path: environment variable > ``trader.yaml`` > default.

Environment variables:
    TRADER_CONFIG      path of the YAML file (default: ``<repo>/trader.yaml``)
    TRADER_DATA_DIR    data folder; when set, ``source`` is forced to ``files``
    TRADER_WAREHOUSE   DuckDB warehouse file
    TRADER_LIVE        ``1``: the live sensors start RUNNING (``trader live`` sets it)
    MLFLOW_TRACKING_URI  MLflow tracking URI
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from models.alpha import AlphaSignals
from models.options_direction import OptionsModelsConfig
from models.setup_meta import SetupMetaConfig
from models.trainers import BaselineModelConfig
from pipeline.core.alpha_portfolio import AlphaBook
from pipeline.core.backtest import BacktestConfig
from pipeline.core.costs import Costs, futures_costs
from pipeline.core.messages import NotifyKinds
from pipeline.core.onchain_signals import OnchainRegimeParams
from pipeline.core.options_fusion import OptionsDeskParams
from pipeline.core.outbox import OutboxParams
from pipeline.core.paper import PaperParams
from pipeline.core.params import Params
from pipeline.core.regimes import RegimeParams
from pipeline.core.setup_gating import GatingParams
from pipeline.core.setups import RiskParams, SetupEvaluationConfig, SetupExecutionConfig, SetupParams
from pipeline.core.timeframes import TIMEFRAME_MS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "trader.yaml"


class UniverseConfig(Params):
    symbols: list[str] = Field(
        default_factory=lambda: [
            f"{b}/USDT" for b in ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]
        ],
        description="Symbols as BASE/QUOTE (ccxt form). Partition keys use BASE-QUOTE.",
    )
    timeframes: list[str] = Field(
        default_factory=lambda: ["1m", "5m", "15m", "1h", "4h", "1d"],
        description="Candle timeframes materialised in market.ohlcv / features / regimes. "
        "Each is ingested natively when the source has it, otherwise resampled.",
    )

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


class ExchangeConfig(Params):
    id: str = Field("binance", description="ccxt exchange id (also the folder name under data_dir/ohlcv).")
    rate_limit_ms: int | None = Field(None, description="Minimum ms between requests; null = ccxt default.")
    max_retries: int = Field(5, ge=0, description="Retries with exponential backoff on network/rate-limit errors.")
    page_limit: int | None = Field(None, description="Candles per request; null = the exchange's limit.")
    since: str = Field(
        "2024-01-01", description="UTC date of the first candle for a cold exchange sync (seed backfill.start_date)."
    )
    overlap_candles: int = Field(
        0,
        ge=0,
        description="Incremental exchange syncs re-fetch this many candles before the stored checkpoint and upsert "
        "them (seed incremental.overlap_candles; corrects candles the exchange revised). 0 = resume after the last.",
    )
    market_type: Literal["spot", "swap"] = Field(
        "spot",
        description="spot, or swap = the USDT-M perpetuals (ccxt BTC/USDT:USDT; the setup scanner's plans are "
        "leveraged). Universe and warehouse symbols stay BTC/USDT; raw.ohlcv.locator records ccxt / ccxt:swap.",
    )
    api_base_url: str | None = Field(
        None,
        description="Replace every API host of the exchange (spot and futures), e.g. the replay exchange's "
        "http://127.0.0.1:<port>; null = the exchange's own hosts.",
    )


class WarehouseConfig(Params):
    path: str = Field("warehouse/data/warehouse.duckdb", description="The writer's DuckDB file.")
    serving_path: str = Field(
        "warehouse/data/serving.duckdb", description="Read-only snapshot published after each run, for people to query."
    )
    exports_dir: str = Field("warehouse/data/exports", description="Parquet exports of the serving tables.")


DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


class MlflowConfig(Params):
    tracking_uri: str | None = Field(
        None, description="Absolute MLflow tracking URI; null = sqlite under warehouse/data/mlflow."
    )
    artifact_location: str | None = Field(
        None, description="Absolute artifact folder; null = warehouse/data/mlflow/artifacts."
    )
    ui_url: str | None = Field(
        None,
        description="Address of the MLflow UI that the links in Dagster metadata open (e.g. http://mlflow.lan:5000); "
        "null = tracking_uri when it is http(s), else http://127.0.0.1:5000 (`mlflow ui`'s default).",
    )


class ApiHealthConfig(Params):
    """``api.health``: when ``GET /api/v1/health/`` says ``degraded`` (the age of each input in the snapshot, from the
    end of the period its newest row covers: a candle's close, the end of a daily row's day, to the time of the
    request). The options signal's bound is ``options_desk.max_data_age_days`` (the CLI's STALE DATA warning)."""

    max_candle_age_hours: float = Field(
        26.0,
        gt=0,
        description="Degraded when any symbol x timeframe's newest candle closed more than this many hours ago (a 1d "
        "candle closes once a day: 24 h + 2 h of slack).",
    )
    max_onchain_age_hours: float = Field(
        48.0, gt=0, description="Degraded when the newest on-chain day ended more than this many hours ago."
    )
    max_sentiment_age_hours: float = Field(
        48.0, gt=0, description="Degraded when the newest Fear & Greed day ended more than this many hours ago."
    )


class ApiConfig(Params):
    """``api``: the REST API (``trader api serve``)."""

    health: ApiHealthConfig = Field(default_factory=ApiHealthConfig)


class DashboardConfig(Params):
    """``dashboard``: the Streamlit app over the serving snapshot (``trader dashboard``, :mod:`pipeline.apps`)."""

    port: int = Field(8501, ge=1, le=65535, description="HTTP port of `trader dashboard` (Streamlit's default).")
    host: str = Field("127.0.0.1", description="Address the dashboard listens on (0.0.0.0 = every interface).")
    cache_ttl_s: float = Field(
        30.0, gt=0, description="Seconds a read of one snapshot version is reused (st.cache_data ttl)."
    )
    refresh_s: float = Field(
        15.0,
        gt=0,
        description="Seconds between refreshes of the live panels (st.fragment run_every): a new "
        "publish of `trader live` shows without a reload.",
    )


class ResampleConfig(Params):
    base_timeframe: str | None = Field(
        None,
        description="Seed data.base_timeframe: when set (e.g. 1m), every other timeframe of universe.timeframes (the "
        "seed's data.derived_timeframes) is resampled from it even where the source has native candles; null = "
        "native candles where the source has them, else resampled from the coarsest finer timeframe.",
    )
    drop_incomplete: bool = Field(
        False,
        description="Drop resampled periods with missing source bars "
        "(default: keep them, flagged by bar_count < expected_bars).",
    )


class AppConfig(Params):
    """``app`` (seed ``app``): display and scheduling."""

    timezone: str = Field(
        "UTC",
        description="IANA time zone of the CLI's displayed times and of the schedules' cron "
        "(Dagster execution_timezone). Stored times stay UTC epoch ms.",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"app.timezone {v!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from e
        return v


class FeaturesConfig(Params):
    warmup_bars: int = Field(
        3000,
        ge=2800,
        description="Bars of history re-read before new bars on incremental "
        "runs (EMA-200 seed decays below 1e-12 after ~2,800 bars).",
    )


class OnchainConfig(Params):
    publication_lag_hours: float = Field(
        0, ge=0, description="Hours after D+1 00:00 UTC before day D's on-chain/sentiment values are usable."
    )
    sheet: str | None = Field(None, description="Google Sheet key with on-chain columns (sheets source); null = off.")


class ChecksConfig(Params):
    max_gap_bars: int = Field(48, description="A single gap longer than this many bars fails the gap check.")
    max_missing_fraction: float = Field(
        0.01, description="Missing bars / expected bars above this fails the gap check."
    )
    max_staleness_bars: int = Field(
        2, description="Warehouse may trail the source's last closed candle by this many bars."
    )
    min_onchain_coverage: float = Field(0.95, description="Required coverage of core on-chain columns since 2011.")


class ResearchConfig(Params):
    baseline: BaselineModelConfig = Field(default_factory=BaselineModelConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)


class OptionsDeskConfig(Params):
    max_data_age_days: int = Field(
        2,
        ge=1,
        description="score-latest / generate-signal warn when the latest stored day is more than this many days "
        "behind today's UTC date (day D is complete at D+1 00:00 UTC, so 1 is as fresh as it gets).",
    )
    daily_cron: str = Field(
        "0 2 * * *",
        description="Cron (app.timezone) of the options_daily schedule: ingest on-chain + Fear & Greed, decide, "
        "publish, notify. Day D is complete at D+1 00:00 UTC + onchain.publication_lag_hours; 02:00 leaves 2 h of "
        "margin at the default lag 0 (raise it with the lag).",
    )
    regimes: OnchainRegimeParams = Field(default_factory=OnchainRegimeParams)
    decisions: OptionsDeskParams = Field(default_factory=OptionsDeskParams)
    models: OptionsModelsConfig = Field(default_factory=OptionsModelsConfig)


class SetupAutomationConfig(Params):
    """``setup_scanner.auto`` (seed ``auto``): weekly train -> calibrate -> tune as Dagster schedules (cron in
    ``app.timezone``, UTC by default)."""

    enabled: bool = Field(False, description="Schedules start RUNNING when true (else STOPPED; toggle in the UI).")
    train_cron: str = Field("0 1 * * 1", description="Mondays 01:00 (app.timezone): retrain the meta-model.")
    calibrate_cron: str = Field(
        "30 1 * * 1", description="Mondays 01:30 (app.timezone): promotion gate on the calibrated scores."
    )
    tune_cron: str = Field(
        "0 2 * * 1", description="Mondays 02:00 (app.timezone): re-tune the thresholds, re-gate and re-simulate."
    )


class SetupScannerConfig(Params):
    """``setup_scanner`` (seed 002): scanned timeframes, setup rules, risk, gating and execution."""

    timeframes: list[str] = Field(default_factory=lambda: ["15m", "1h"])
    symbols: list[str] | None = Field(None, description="null = universe.symbols")
    costs: Costs = Field(
        default_factory=futures_costs,
        description="Fees and slippage of every setup-scanner rule: "
        "minimum net TP and outcome net (signals.min_tp_cost_mode), EV gate (gating.costs_mode) and "
        "simulated execution (fill by fill). Bitget USDT-M futures: maker 2 / taker 6 / slippage 2 bps.",
    )
    signals: SetupParams = Field(default_factory=SetupParams)
    risk: RiskParams = Field(default_factory=RiskParams)
    gating: GatingParams = Field(default_factory=GatingParams)
    execution: SetupExecutionConfig = Field(default_factory=SetupExecutionConfig)
    evaluation: SetupEvaluationConfig = Field(default_factory=SetupEvaluationConfig)
    meta: SetupMetaConfig = Field(default_factory=SetupMetaConfig)
    auto: SetupAutomationConfig = Field(default_factory=SetupAutomationConfig)
    tune_every_days: int = Field(
        7, ge=1, description="Cadence of the point-in-time threshold versions (weekly = seed)."
    )
    init_cash: float = Field(
        100_000.0, gt=0, description="Backtest capital, quote currency (sleeves: split equally per symbol x timeframe)."
    )
    book: Literal["shared", "sleeves"] = Field(
        "shared",
        description="Backtest book: shared = one cash account for every symbol x timeframe (risk-sized on its "
        "equity); sleeves = one equal account per symbol x timeframe.",
    )
    max_positions: int | None = Field(
        None, ge=1, description="Shared book: most concurrent positions (null = one per symbol x timeframe)."
    )


class AlphaPortfolioConfig(AlphaSignals, AlphaBook):
    """``alpha_portfolio`` (seed 004, issue 18): the tiered multi-asset book. Signal part: ``features``, ``regime``,
    ``model``, ``score`` (:class:`models.alpha.AlphaSignals`); portfolio part: ``tiers``, ``portfolio``, ``risk``,
    ``execution``, ``backtest`` (:class:`pipeline.core.alpha_portfolio.AlphaBook`)."""

    train_cron: str = Field(
        "0 4 * * 0",
        description="When alpha_train_job retrains the 6h / 24h models (cron in app.timezone; RUNNING under "
        "trader live, like the other live schedules). The live hourly path never trains.",
    )


class LiveConfig(Params):
    """``live``: the sensors that turn each newly closed candle into one run of ``live_candle_job``."""

    enabled: bool = Field(
        False,
        description="Live sensors start RUNNING when true (trader live sets it with TRADER_LIVE=1; else STOPPED, "
        "toggle in the UI).",
    )
    timeframes: list[str] | None = Field(
        None, description="Timeframes with a closed-candle sensor; null = setup_scanner.timeframes."
    )
    symbols: list[str] | None = Field(None, description="Symbols the sensors watch; null = universe.symbols.")
    sensor_interval_s: int = Field(10, ge=1, description="Seconds between two sensor ticks (Dagster's minimum).")
    close_lag_s: float = Field(
        5.0, ge=0, description="Seconds after a candle's close before it is requested (the exchange settles it)."
    )


class HealthConfig(Params):
    """``health`` (issue 16): freshness checks, the run-failure and sensor-lag alerts, routed to the notifier."""

    cron: str = Field(
        "*/15 * * * *", description="Cron (app.timezone) of the health schedule (freshness checks, health_job)."
    )
    candle_timeframes: list[str] | None = Field(
        None, description="Candle series judged by the freshness check; null = the live timeframes."
    )
    max_candle_lag_bars: int = Field(
        3,
        ge=1,
        description="A series is stale when its newest candle closed more than this many of its bars before now "
        "(the exchange clock with source: exchange, else the wall clock).",
    )
    max_scan_age_hours: float = Field(
        2.0, gt=0, description="signals.setups is stale when the setup scan last ran longer ago than this."
    )
    sensor_lag_factor: float = Field(
        2.0,
        gt=0,
        description="Sensor-lag alert: a closed_candles_<tf> sensor is behind when now - the close of the newest "
        "candle its cursor requested > this x the timeframe.",
    )
    sensor_lag_interval_s: int = Field(60, ge=1, description="Seconds between two ticks of the sensor-lag sensor.")
    ui_url: str | None = Field(
        None,
        description="Dagster UI address for the run links of run_failure messages (e.g. http://127.0.0.1:3000); "
        "null = no link.",
    )


class MaintenanceConfig(Params):
    """``maintenance`` (seed 002 ``db_checkpoint``): the daily warehouse CHECKPOINT and ops-log retention."""

    cron: str = Field("30 0 * * *", description="Cron (app.timezone) of the db_maintenance schedule.")
    retention_days: int = Field(
        30,
        ge=1,
        description="ops.notification_attempts rows of finished messages and ops.publish_log rows older than this "
        "are deleted, as are finished Dagster runs of the notification / health / maintenance jobs. Business "
        "tables (raw, market, features, regimes, ml, signals, backtest, paper) are never pruned.",
    )


class TelegramConfig(Params):
    """``notify.telegram`` (seed 002): the Telegram bot that receives the notifications (resources/notifier.py)."""

    enabled: bool = Field(False, description="Send to Telegram; false = messages are stored as 'off', never sent.")
    bot_token_env: str = Field(
        "TELEGRAM_BOT_TOKEN",
        description="Name of the environment variable holding the bot token (the token is never written in "
        "trader.yaml; seed notify.telegram.bot_token).",
    )
    chat_id: str | None = Field(None, description="Chat id (e.g. 123456789, -100123... for a group) or @channel.")
    api_base: str = Field("https://api.telegram.org", description="Bot API address (tests: a local fake server).")
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to connect to the Bot API.")
    read_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for the Bot API's answer.")
    connect_retries: int = Field(2, ge=0, description="Immediate retries of a failed connection (nothing was sent).")

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_text(cls, v):
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # YAML reads 123456789 as a number

    @model_validator(mode="after")
    def _chat(self) -> "TelegramConfig":
        if self.enabled and not self.chat_id:
            raise ValueError("notify.telegram.chat_id is required when notify.telegram.enabled is true")
        return self


class NotifyConfig(Params):
    """``notify``: where notifications go, which kinds are sent, and how the outbox delivers them (issue 16)."""

    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    kinds: NotifyKinds = Field(default_factory=NotifyKinds)
    outbox: OutboxParams = Field(default_factory=OutboxParams)


class TraderConfig(Params):
    """The whole configuration (``trader.yaml``)."""

    app: AppConfig = Field(default_factory=AppConfig)
    universe: UniverseConfig = Field(default_factory=UniverseConfig)
    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    source: Literal["files", "exchange"] = Field("files", description="Where candles come from.")
    data_dir: str = Field(
        "../shared/data", description="Folder laid out like shared/data (ohlcv/, onchain/, sentiment/)."
    )
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    resample: ResampleConfig = Field(default_factory=ResampleConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    regimes: RegimeParams = Field(default_factory=RegimeParams)
    onchain: OnchainConfig = Field(default_factory=OnchainConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    research: ResearchConfig = Field(default_factory=ResearchConfig)
    options_desk: OptionsDeskConfig = Field(default_factory=OptionsDeskConfig)
    setup_scanner: SetupScannerConfig = Field(default_factory=SetupScannerConfig)
    alpha_portfolio: AlphaPortfolioConfig = Field(default_factory=AlphaPortfolioConfig)
    paper: PaperParams = Field(default_factory=PaperParams)
    api: ApiConfig = Field(default_factory=ApiConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)

    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    alpha_portfolio: AlphaPortfolioConfig = Field(default_factory=AlphaPortfolioConfig)

    @model_validator(mode="after")
    def _base_timeframe(self) -> "TraderConfig":
        b = self.resample.base_timeframe
        if b is None:
            return self
        if b not in self.universe.timeframes:
            raise ValueError(
                f"resample.base_timeframe {b!r} must be one of universe.timeframes {self.universe.timeframes}"
            )
        bad = [t for t in self.universe.timeframes if TIMEFRAME_MS[t] % TIMEFRAME_MS[b]]
        if bad:
            raise ValueError(f"universe.timeframes {bad} are not multiples of resample.base_timeframe {b!r}")
        return self

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
        if os.environ.get("TRADER_LIVE") == "1":
            c.live.enabled = True

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
        http = c.mlflow.tracking_uri.startswith(("http://", "https://"))
        c.mlflow.ui_url = (c.mlflow.ui_url or (c.mlflow.tracking_uri if http else DEFAULT_MLFLOW_UI)).rstrip("/")
        return c


class ConfigError(ValueError):
    """The configuration file is missing, not valid YAML, or has an unknown key or a wrong value.

    ``str(e)`` names the file and every offending field (``universe.timeframes``) with what is wrong, in a few lines
    meant for the terminal (``trader`` prints it without a traceback)."""

    def __init__(self, path: Path, problems: list[str]):
        self.path, self.problems = path, problems
        super().__init__(f"{path}: " + ("; ".join(problems) if len(problems) == 1 else "\n  " + "\n  ".join(problems)))


def _describe(err: dict) -> str:
    """One line for one pydantic error: the dotted field, what is wrong, the value given."""
    loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
    if err.get("type") == "extra_forbidden":
        return f"field {loc!r}: unknown key (not a setting of this section; check the spelling in trader.yaml)"
    given = repr(err.get("input"))
    given = given if len(given) <= 60 else given[:57] + "..."
    return f"field {loc!r}: {err.get('msg', 'invalid')} (got {given})"


def load_config(path: str | os.PathLike | None = None) -> TraderConfig:
    """Load, validate and resolve the configuration.

    Raises:
        ConfigError: the file does not exist, is not valid YAML (line and column), or a field is unknown or has a
            wrong type/value (every field named, dotted: ``checks.max_gap_bars``).
    """
    p = Path(path or os.environ.get("TRADER_CONFIG") or DEFAULT_CONFIG).resolve()
    if not p.is_file():
        raise ConfigError(p, ["config file not found (set TRADER_CONFIG or create trader.yaml)"])
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(p, [f"not valid YAML: {where}{getattr(e, 'problem', None) or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(p, [f"not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(p, [f"the top level must be a mapping of sections, got {type(raw).__name__}"])
    try:
        return TraderConfig.model_validate(raw).resolve(p.parent)
    except ValidationError as e:
        raise ConfigError(p, [_describe(err) for err in e.errors()[:10]]) from None


@lru_cache(maxsize=1)
def settings() -> TraderConfig:
    """Process-wide configuration (cached; tests call ``settings.cache_clear()`` after changing env)."""
    return load_config()


def write_replay_config(cfg: TraderConfig, base_url: str, start_ms: int, out_dir: Path) -> Path:
    """The configuration ``trader live --replay`` runs with, written to ``out_dir/trader.yaml`` (returned).

    ``cfg`` (resolved) with: candles from the exchange at ``base_url`` (the replay server), fetched from the replay
    start minus ``features.warmup_bars`` bars of the longest live timeframe (the features' warm-up), a warehouse of
    its own under ``out_dir`` (the replayed days are not mixed into the files-built warehouse), the live sensors
    on, and the same MLflow store as ``cfg`` (so the champions trained by ``trader run`` gate the replayed signals,
    scored live: ``setup_scanner.meta.score_in_sample``; they were trained on data that may include the replayed days:
    docs/decisions.md)."""
    tfs = cfg.live.timeframes or cfg.setup_scanner.timeframes
    warm = cfg.features.warmup_bars * max(TIMEFRAME_MS[t] for t in tfs)
    since = datetime.fromtimestamp((start_ms - warm) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
    raw = cfg.model_dump(mode="json")
    raw["source"] = "exchange"
    raw["exchange"] |= {"api_base_url": base_url, "since": since, "rate_limit_ms": 1}
    raw["warehouse"] = {
        "path": str(out_dir / "warehouse.duckdb"),
        "serving_path": str(out_dir / "serving.duckdb"),
        "exports_dir": str(out_dir / "exports"),
    }
    raw["live"]["enabled"] = True
    raw["setup_scanner"]["meta"]["score_in_sample"] = True  # the registry's champion scores the replayed candles
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / "trader.yaml"
    head = f"# written by trader live --replay (replay exchange {base_url}); edit trader.yaml instead\n"
    p.write_text(head + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return p
