"""The setup scanner's meta-model: calibrated p(win) of a Fibonacci / AVWAP candidate (pure).

Seed ``002`` ("Meta-Model (Precision Filter)"): an XGBoost classifier scores each candidate signal; isotonic
calibration makes ``p(win)`` a probability the EV gate can use.

* **Rows**: every valid candidate of ``signals.setup_candidates`` (all scanned symbols and timeframes pooled).
* **Label** ``win``: the plan taken on its own reached TP1 before its stop (:func:`pipeline.core.setups.plan_outcomes`;
  the seed's TP / TP1_TRAIL outcomes); a plan stopped first, or closed by the time stop before TP1, is a loss; plans
  never filled (EXPIRED) or unresolved at the data's end (OPEN) have no label. The label ends at ``exit_ts``, which
  purging uses. (A positive-net label was tried first: AUC 0.52 and an EV that overstated returns; see
  docs/decisions.md.)
* **Features** (:data:`META_FEATURES`), all known on the signal bar's close: the plan's geometry (side, Fibonacci
  level, reward/risk to TP1, stop distance, net TP1, AVWAP distance and slope in ATR, leg size in ATR, leverage),
  context (timeframe in minutes, UTC hour and weekday = trading session) and the scale-free technical and regime
  inputs of :data:`models.datasets.MODEL_FEATURES` of the signal bar.
* **Fit**: :func:`models.walkforward.fit_point_in_time` — purged walk-forward with forecast folds; each candidate's
  p(win) comes from the fold model refit before it, calibrated (isotonic) on earlier out-of-fold scores whose
  labels had ended. The served model is the latest fold's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from models.datasets import MODEL_FEATURES, REGIME_INPUTS, model_features
from models.evaluation import PromotionCriteria
from models.retrain import RetrainPolicy
from models.splits import WalkForwardConfig
from models.trainers import Kind, ModelConfig, ModelSpec
from models.walkforward import PointInTimeFit, fit_point_in_time
from pipeline.core.timeframes import timeframe_ms

#: bar length of the meta-model's walk-forward windows given in bars (candidates of every timeframe are pooled)
META_STEP_MS = 3_600_000


class SetupMetaConfig(ModelConfig):
    """``setup_scanner.meta`` (seed ``models.meta``): the XGBoost p(win) precision filter; bar-count windows are
    hours (:data:`META_STEP_MS`)."""

    enabled: bool = Field(
        True, description="false = no p(win) gate: every valid candidate becomes a signal (rules only)."
    )
    name: str = Field("setup_meta", description="Registered MLflow model name; gating uses its @champion.")
    score_in_sample: bool = Field(
        False,
        description="When the warehouse holds none of the champion's stored out-of-sample scores (a replay's own "
        "warehouse), score every candidate live with the served model, also inside its training period (in sample). "
        "trader live --replay sets it; false = candidates before the champion's data end stay unscored.",
    )
    kind: Kind = Field("xgboost", description="Estimator: lightgbm, xgboost or logreg.")
    params: dict = Field(default_factory=dict, description="Over models/trainers.py DEFAULTS['xgboost'].")
    walk_forward: WalkForwardConfig = Field(
        default_factory=lambda: WalkForwardConfig(
            train_window="365d", test_window="180d", purge="0", embargo="1d", expanding=True, min_calibration_rows=2000
        )
    )
    promotion: PromotionCriteria = Field(default_factory=lambda: PromotionCriteria(min_oos_rows=5000))
    calibration: Literal["isotonic", "sigmoid", "none"] = Field(
        "isotonic",
        description="isotonic or sigmoid (Platt), fit on earlier out-of-fold predictions only; none = the seed's "
        "calibration.enabled: false: p(win) is the classifier's raw probability (p_cal = p_raw from the first fold).",
    )
    retrain: RetrainPolicy = Field(
        default_factory=lambda: RetrainPolicy(min_new_labels=300),
        description="300 = about one week of resolved candidates (10 pairs, 15m + 1h: ~330 a week since 2018).",
    )


PLAN_FEATURES = [
    "side",
    "level",
    "rr_tp1",
    "sl_pct",
    "tp1_net_pct",
    "avwap_dist_atr",
    "avwap_slope_atr",
    "leg_atr",
    "leverage",
]
CONTEXT_FEATURES = ["tf_minutes", "hour_utc", "weekday"]
META_FEATURES = PLAN_FEATURES + CONTEXT_FEATURES + MODEL_FEATURES


def meta_dataset(candidates: pd.DataFrame, technical: pd.DataFrame) -> pd.DataFrame:
    """Model rows for the valid candidates.

    Args:
        candidates: ``signals.setup_candidates`` rows (``candidate_id``, ``symbol``, ``timeframe``, ``ts``, the plan
            columns, ``reject_reason``, ``win``, ``exit_ts``).
        technical: :func:`models.datasets.model_features` rows with ``symbol`` and ``timeframe`` added (one row per
            bar of each series; only the signal bars are used).

    Returns:
        One row per valid candidate sorted by ``ts`` then ``candidate_id``: ``candidate_id``, ``symbol``,
        ``timeframe``, ``ts``, ``exit_ts`` (-1 when unlabelled), ``win`` (1.0/0.0, NaN when unlabelled),
        ``net_pct`` and :data:`META_FEATURES` (float64).

    Raises:
        ValueError: a candidate has no technical row for its signal bar (features not built for that series).
    """
    c = candidates[candidates["reject_reason"].isna()]
    keep = ["candidate_id", "symbol", "timeframe", "ts", "exit_ts", "win", "net_pct", *PLAN_FEATURES]
    x = c[keep].merge(
        technical[["symbol", "timeframe", "ts", *MODEL_FEATURES]],
        on=["symbol", "timeframe", "ts"],
        how="left",
        indicator=True,
    )
    missing = x["_merge"] != "both"
    if missing.any():
        r = x[missing].iloc[0]
        raise ValueError(
            f"meta_dataset: {int(missing.sum())} candidates have no technical features for their signal bar "
            f"(first: {r['symbol']} {r['timeframe']} ts={int(r['ts'])})"
        )
    x = x.drop(columns="_merge")
    t = pd.to_datetime(x["ts"], unit="ms")
    x["tf_minutes"] = x["timeframe"].map(lambda tf: timeframe_ms(tf) / 60_000).astype("float64")
    x["hour_utc"] = t.dt.hour.astype("float64")
    x["weekday"] = t.dt.weekday.astype("float64")
    x[META_FEATURES] = x[META_FEATURES].astype("float64").replace([np.inf, -np.inf], np.nan)
    x["exit_ts"] = np.where(x["win"].notna(), x["exit_ts"], -1).astype(np.int64)
    return x.sort_values(["ts", "candidate_id"], kind="stable").reset_index(drop=True)


def fit_meta(
    data: pd.DataFrame,
    spec: ModelSpec,
    *,
    train_ms: int,
    test_ms: int,
    purge_ms: int = 0,
    embargo_ms: int = 0,
    expanding: bool = True,
    calibration: str = "isotonic",
    min_calibration_rows: int = 2000,
) -> PointInTimeFit:
    """Walk-forward fit of p(win) on :func:`meta_dataset` rows; ``scores`` aligned with ``data``.

    Raises:
        ValueError: no labelled candidates, or history shorter than the training window.
    """
    return fit_point_in_time(
        data,
        META_FEATURES,
        "win",
        spec,
        train_ms=train_ms,
        test_ms=test_ms,
        t1col="exit_ts",
        purge_ms=purge_ms,
        embargo_ms=embargo_ms,
        expanding=expanding,
        calibration=calibration,
        min_calibration_rows=min_calibration_rows,
        min_train_rows=500,
    )


def signal_bar_features(series_by_key: dict[tuple[str, str], pd.DataFrame], candidates: pd.DataFrame) -> pd.DataFrame:
    """:func:`models.datasets.model_features` rows of the candidates' signal bars, with ``symbol`` and ``timeframe``.

    Args:
        series_by_key: ``warehouse.readers.series`` frame per ``(symbol, timeframe)`` of ``candidates``.
        candidates: rows with ``symbol``, ``timeframe``, ``ts`` (epoch ms UTC of the signal bar).
    """
    parts = []
    for (sym, tf), g in candidates.groupby(["symbol", "timeframe"], sort=True):
        s = series_by_key[(sym, tf)]
        x = model_features(s, s[REGIME_INPUTS])
        parts.append(x[x["ts"].isin(g["ts"].unique())].assign(symbol=sym, timeframe=tf))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["symbol", "timeframe", "ts"])


def with_stored_scores(
    candidates: pd.DataFrame, stored: pd.DataFrame, data_end_ms: int
) -> tuple[pd.DataFrame, pd.Series]:
    """Candidates with the champion's stored point-in-time ``p_win`` and ``scored_by = "stored"``, and the mask of
    those newer than the champion's data (``ts > data_end_ms``, no stored score): the ones to score live.

    ``stored``: ``candidate_id, p_cal, fold`` of the champion's training run (``ml.setup_meta_scores``).
    """
    c = candidates.merge(stored, on="candidate_id", how="left")
    c["p_win"] = c["p_cal"]
    c.loc[c["fold"].notna(), "scored_by"] = "stored"
    return c, c["fold"].isna() & (c["ts"] > data_end_ms)


def fit_configured(data: pd.DataFrame, m: SetupMetaConfig) -> PointInTimeFit:
    """:func:`fit_meta` with the windows, estimator and calibration of the ``setup_scanner.meta`` section ``m``
    (``calibration: none`` → the identity calibrator from the first fold on: ``p_cal == p_raw``)."""
    w = m.walk_forward.to_ms(META_STEP_MS)
    raw = m.calibration == "none"
    return fit_meta(
        data,
        m.spec(),
        train_ms=w.train_ms,
        test_ms=w.test_ms,
        purge_ms=w.purge_ms,
        embargo_ms=w.embargo_ms,
        expanding=w.expanding,
        calibration="identity" if raw else m.calibration,
        min_calibration_rows=0 if raw else m.walk_forward.min_calibration_rows,
    )


def scored_rows(data: pd.DataFrame, fit: PointInTimeFit) -> pd.DataFrame:
    """Every candidate's point-in-time ``p_raw`` / ``p_cal`` / ``fold`` beside its keys, label and net (the rows of
    ``ml.setup_meta_scores``)."""
    return pd.concat(
        [data[["candidate_id", "symbol", "timeframe", "ts", "exit_ts", "win", "net_pct"]], fit.scores], axis=1
    )
