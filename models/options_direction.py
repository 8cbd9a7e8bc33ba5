"""``p_long`` / ``p_short``: BTC direction over the option horizon from daily on-chain regime features (pure).

The options desk's two models (seed 000, "ML MODEL SCORES"):

* ``p_long`` = P(BTC return over the next ``horizon_days`` >= ``+long_min_return``) — a call's terrain;
* ``p_short`` = P(BTC return over the next ``horizon_days`` <= ``-short_min_return``) — a put's terrain;
* ``signal_option_call = p_long >= call_threshold``, ``signal_option_put = p_short >= put_threshold``.

**Timing.** Day ``D``'s row uses on-chain features of day ``D`` (published at ``D+1 00:00 UTC`` plus the configured
lag) and the BTC price of day ``D`` (``market.onchain_daily.price_usd``, the vendor's daily price), the same
reference price the desk's strikes and its evaluation use. Its label uses the price of day ``D + horizon_days``;
``label_end_ts`` is that day (epoch ms UTC), so purging drops every training row whose label ends inside or after
a test window.

**Refit schedule.** Purged walk-forward (:func:`models.splits.walk_forward`) with forecast folds up to the last
day: the score of day ``D`` always comes from the model refit at the latest scheduled refit date ``<= D``,
trained only on labels that had ended by then and calibrated (isotonic) on earlier out-of-fold scores whose labels
had ended too. History truncated at any day ``D`` therefore reproduces the full run's score for ``D`` exactly
(tests/models/test_options_models.py). The served model (what MLflow registers) is the latest fold's model, i.e. the one
that scored the most recent days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from models.evaluation import PromotionCriteria
from models.labels import forward_returns
from models.retrain import RetrainPolicy
from models.splits import Fold, WalkForwardConfig
from models.trainers import Calibration, ModelConfig, ModelSpec
from models.walkforward import CalibratedModel, WalkForwardResult, fit_point_in_time

DAY_MS = 86_400_000


class OptionsModelsConfig(ModelConfig):
    """``options_desk.models``: ``p_long`` / ``p_short`` labels, estimator, walk-forward (steps of one day),
    promotion and signals."""

    names: dict[str, str] = Field(
        default_factory=lambda: {"p_long": "options_p_long", "p_short": "options_p_short"},
        description="Registered MLflow model name per score.",
    )
    horizon_days: int = Field(30, ge=1, description="Label horizon in days (the primary options' DTE scale).")
    long_min_return: float = Field(
        0.05, ge=0, description="p_long's label: BTC return over the horizon >= +this (fraction)."
    )
    short_min_return: float = Field(
        0.05, ge=0, description="p_short's label: BTC return over the horizon <= -this (fraction)."
    )
    start_date: str = Field("2012-01-01", description="First day of the dataset (on-chain prices before are thin).")
    params: dict = Field(
        default_factory=lambda: {
            "n_estimators": 60,
            "learning_rate": 0.03,
            "num_leaves": 3,
            "min_child_samples": 300,
            "colsample_bytree": 0.5,
        },
        description="Heavily regularised: ~5,000 daily rows whose 30-day labels overlap.",
    )
    calibration: Calibration = Field(
        "sigmoid", description="Platt scaling: isotonic overfits the few effective daily samples."
    )
    walk_forward: WalkForwardConfig = Field(
        default_factory=lambda: WalkForwardConfig(
            train_window="1460d", test_window="90d", purge="0", embargo="0", expanding=True, min_calibration_rows=365
        )
    )
    promotion: PromotionCriteria = Field(
        default_factory=lambda: PromotionCriteria(min_auc=0.52, max_ece=0.05, min_oos_rows=1000)
    )
    call_threshold: float = Field(0.5, ge=0, le=1, description="signal_option_call = p_long >= this.")
    put_threshold: float = Field(0.5, ge=0, le=1, description="signal_option_put = p_short >= this.")
    retrain: RetrainPolicy = Field(
        default_factory=lambda: RetrainPolicy(min_new_labels=1),
        description="1 = every newly labelled day: a new day is scored only by the walk-forward (docs/decisions.md).",
    )


#: level columns of ``features.onchain`` that trend with time (USD, BTC, address counts); a tree model would
#: learn the calendar from them, so the models use the scale-free rest plus BTC's own momentum and volatility.
LEVEL_COLUMNS = [
    "mdia_days",
    "realized_price_usd",
    "mvrv_60d_max",
    "whale_addr_1k",
    "whale_addr_10k",
    "exchange_supply_btc",
    "exchange_netflow_7d_btc",
    "exchange_netflow_30d_btc",
]
#: the ``features.onchain`` columns the models read, named one by one: the table's other columns (issue 12 item 9
#: added 48) do not enter the models until this list says so, so a new feature never silently changes a model.
ONCHAIN_MODEL_FEATURES = [
    "mdia_chg_7d",
    "mdia_chg_14d",
    "mdia_chg_30d",
    "mdia_chg_90d",
    "mdia_chg_accel",
    "mdia_drift_adj_30d",
    "mdia_chg_30d_z",
    "mdia_pct_rank_730d",
    "mdia_bucket",
    "mvrv",
    "mvrv_pct_rank_365d",
    "mvrv_pct_rank_1460d",
    "mvrv_z_365d",
    "mvrv_composite",
    "mvrv_chg_14d",
    "mvrv_60d_pct_rank",
    "mvrv_60d_dist_from_max",
    "price_to_realized",
    "sth_mvrv_proxy",
    "mvrv_ls_primary",
    "mvrv_ls_proxy",
    "mvrv_ls_z_primary",
    "mvrv_ls_z_proxy",
    "mvrv_ls_slope_proxy",
    "mvrv_ls_pct_rank_365d",
    "whale_addr_1k_chg_30d",
    "whale_addr_10k_chg_30d",
    "whale_supply_1k_chg_30d",
    "supply_top1pct_chg_30d",
    "exchange_supply_share",
    "exchange_supply_chg_30d",
    "fng_value",
    "fng_z_30d",
    "fng_z_90d",
    "fng_chg_7d",
    "fng_bucket",
    "euphoria_days_7",
]
PRICE_FEATURES = ["btc_ret_7d", "btc_ret_30d", "btc_ret_90d", "btc_rv_30d", "btc_dist_200d"]
OPTIONS_MODEL_FEATURES = ONCHAIN_MODEL_FEATURES + PRICE_FEATURES
#: model name key -> label column
TARGETS = {"p_long": "y_long", "p_short": "y_short"}


def direction_dataset(
    features: pd.DataFrame,
    price: pd.Series,
    *,
    horizon_days: int,
    long_min_return: float,
    short_min_return: float,
    start: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Model rows, one per day.

    Args:
        features: ``features.onchain`` rows (``date`` + at least ``ONCHAIN_MODEL_FEATURES``), one per calendar day.
        price: BTC daily price in USD indexed by date (NaN/0 = unknown).
        horizon_days: label horizon in days (the option's DTE scale).
        long_min_return / short_min_return: thresholds as positive fractions (0.05 = 5 %).
        start: first day of the dataset (earlier days are warm-up only).

    Returns:
        ``date`` (datetime64), ``ts`` and ``label_end_ts`` (int64 epoch ms; -1 while unknown), ``fwd_ret`` (fraction),
        ``y_long`` / ``y_short`` (0/1 float, NaN while unknown) and ``OPTIONS_MODEL_FEATURES`` (float64). Every
        feature of day ``D`` uses data of days ``<= D`` only.

    Raises:
        ValueError: ``features`` has duplicate dates or no ``date`` column.
    """
    if "date" not in features:
        raise ValueError("direction_dataset: features need a 'date' column")
    f = features.assign(date=pd.to_datetime(features["date"])).sort_values("date").reset_index(drop=True)
    if f["date"].duplicated().any():
        raise ValueError("direction_dataset: duplicate dates in the on-chain features")
    px = price.copy()
    px.index = pd.to_datetime(px.index)
    px = px[~px.index.duplicated(keep="last")].where(lambda s: s > 0)
    close = f["date"].map(px).astype("float64")
    out = pd.DataFrame({"date": f["date"], "ts": f["date"].astype("datetime64[ms]").astype("int64")})
    lab = forward_returns(pd.DataFrame({"ts": out["ts"], "close": close}), horizon_days, DAY_MS)
    fwd = lab["fwd_ret"].to_numpy()
    out["label_end_ts"] = lab["label_end_ts"].to_numpy()
    out["fwd_ret"] = fwd
    out["y_long"] = np.where(np.isnan(fwd), np.nan, (fwd >= long_min_return).astype(float))
    out["y_short"] = np.where(np.isnan(fwd), np.nan, (fwd <= -short_min_return).astype(float))
    for c in ONCHAIN_MODEL_FEATURES:
        out[c] = pd.to_numeric(f[c], errors="coerce").astype("float64") if c in f else np.nan
    logp = np.log(close)
    out["btc_ret_7d"] = close / close.shift(7) - 1
    out["btc_ret_30d"] = close / close.shift(30) - 1
    out["btc_ret_90d"] = close / close.shift(90) - 1
    out["btc_rv_30d"] = logp.diff().rolling(30, min_periods=25).std() * np.sqrt(365)
    out["btc_dist_200d"] = close / close.rolling(200, min_periods=150).mean() - 1
    out = out[["date", "ts", "label_end_ts", "fwd_ret", "y_long", "y_short", *OPTIONS_MODEL_FEATURES]]
    if start is not None:
        out = out[out["date"] >= pd.Timestamp(start)].reset_index(drop=True)
    return out


@dataclass
class DirectionFit:
    """One target's walk-forward fit.

    ``daily``: one row per dataset day from the first refit on: ``date``, ``fold`` (refit number), ``p_raw``,
    ``p_cal`` (NaN before enough calibration history), ``y`` (NaN while unknown), ``fwd_ret``, ``label_end_ts``.
    ``served``: the latest fold's estimator + calibrator (identity if that fold had none).
    """

    target: str
    result: WalkForwardResult
    folds: list[Fold]
    daily: pd.DataFrame
    served: CalibratedModel
    labelled_rows: int


def labelled_rows(data: pd.DataFrame) -> int:
    """Days of :func:`direction_dataset` rows whose label is known (``fwd_ret`` known, ``label_end_ts >= 0``): the
    rows each target trains on (``DirectionFit.labelled_rows``), the count :func:`models.retrain.should_retrain`
    compares."""
    return int((data["fwd_ret"].notna() & (data["label_end_ts"] >= 0)).sum())


def fit_direction(
    data: pd.DataFrame,
    target: str,
    spec: ModelSpec,
    *,
    train_ms: int,
    test_ms: int,
    purge_ms: int = 0,
    embargo_ms: int = 0,
    expanding: bool = True,
    calibration: str = "isotonic",
    min_calibration_rows: int = 365,
) -> DirectionFit:
    """Walk-forward fit of ``p_long`` or ``p_short`` (``target`` in :data:`TARGETS`) on :func:`direction_dataset` rows.

    Raises:
        KeyError: unknown target.
        ValueError: no labelled rows, or history shorter than the training window.
    """
    ycol = TARGETS[target]
    if not (data[ycol].notna() & (data["label_end_ts"] >= 0)).any():
        raise ValueError(f"fit_direction({target}): no labelled rows (price history shorter than the horizon?)")
    fit = fit_point_in_time(
        data,
        OPTIONS_MODEL_FEATURES,
        ycol,
        spec,
        train_ms=train_ms,
        test_ms=test_ms,
        purge_ms=purge_ms,
        embargo_ms=embargo_ms,
        expanding=expanding,
        calibration=calibration,
        min_calibration_rows=min_calibration_rows,
    )
    scored = fit.scores
    daily = pd.DataFrame(
        {
            "date": data["date"].to_numpy(),
            "fold": scored["fold"].to_numpy(),
            "p_raw": scored["p_raw"].to_numpy(),
            "p_cal": scored["p_cal"].to_numpy(),
            "y": data[ycol].to_numpy(),
            "fwd_ret": data["fwd_ret"].to_numpy(),
            "label_end_ts": data["label_end_ts"].to_numpy(),
        }
    )
    daily = daily[daily["fold"] >= 0].reset_index(drop=True)
    return DirectionFit(target, fit.result, fit.folds, daily, fit.served, fit.labelled_rows)


def option_signals(p_long: pd.Series, p_short: pd.Series, call_threshold: float, put_threshold: float) -> pd.DataFrame:
    """``signal_option_call`` / ``signal_option_put`` (float64 1.0 / 0.0, NaN where the score is missing)."""
    call = (p_long >= call_threshold).astype("float64").where(p_long.notna())
    put = (p_short >= put_threshold).astype("float64").where(p_short.notna())
    return pd.DataFrame({"signal_option_call": call, "signal_option_put": put})
