"""Alpha portfolio (seed 004) models: forward vol-normalised return labels, the pooled dataset, the purged walk-forward
fit of the 6h / 24h LightGBM regressors, rank-IC metrics, calibration deciles and the IC promotion rule (pure).

**Label** of horizon ``h`` bars at row ``t`` of one symbol: ``y = ln(close_{t+h} / close_t) / (rvol_24h_t ·
sqrt(h))``, clipped to ``±label_clip``; known at the close of bar ``t+h``, so its end time ``t1 = ts_{t+h}`` (the
bar's open, the project's row time) is what the purge uses (:func:`models.splits.walk_forward`). Rows whose bar
``t+h`` is missing (gap) or not yet there are unlabelled (never trained on, still scored).

**Fit** (:func:`fit_alpha`): every symbol's hourly rows pooled, :func:`models.walkforward.fit_point_in_time` with
the section's windows and an embargo of at least the label horizon, trained on every ``train_stride``-th hour of the
clock (the labels of neighbouring hours overlap, so this costs little information and divides the fit time): every row gets the prediction of the model
refit at the latest scheduled refit ``<= ts`` (out of sample for every labelled row; the last, "forecast" fold's
model scores the hours after the last label and is the served model).

**Expected-return scale** (:func:`fold_scales`): regressors of a noisy label overstate its size out of sample, so
each fold's predictions are multiplied by the OLS slope of label on prediction over the earlier folds' out-of-sample
rows whose labels had ended (``pred_cal``; the served model carries its fold's slope as a ``scale`` calibrator).

**Rank IC** (:func:`rank_ic`): per hour, the Spearman correlation across assets of prediction and label (hours with
at least ``min_assets`` assets); the summary is the mean over hours and its t-statistic versus zero computed on
non-overlapping blocks of ``h`` hours (the block means are independent when the labels do not overlap; the
hour-by-hour t-statistic would overstate it by about ``sqrt(h)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from models.calibration import Calibrator
from models.retrain import RetrainPolicy
from models.splits import WalkForwardConfig
from models.trainers import ModelConfig
from models.walkforward import CalibratedModel, PointInTimeFit, fit_point_in_time
from pipeline.core.alpha_features import FEATURES, AlphaFeatureParams, AlphaRegimeParams, AlphaScoreParams
from pipeline.core.params import Params

DEFAULT_PARAMS = {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 500}


class AlphaPromotion(Params):
    """Promotion gate of an alpha model on its out-of-sample rank IC (``alpha_portfolio.model.h*.promotion``)."""

    min_ic: float = Field(0.01, description="Mean OOS rank IC (Spearman across assets per hour) must exceed this.")
    min_ic_t: float = Field(2.0, description="t-statistic of the mean IC vs zero (non-overlapping blocks) above this.")
    min_oos_hours: int = Field(1000, ge=1, description="Out-of-sample hours with an IC required to judge.")


class AlphaModelConfig(ModelConfig):
    """One alpha horizon: a LightGBM regressor of the forward vol-normalised return over ``horizon_bars`` 1h bars."""

    name: str = Field("alpha_24h", description="Registered MLflow model name.")
    retrain: RetrainPolicy = Field(
        default_factory=lambda: RetrainPolicy(min_new_labels=210),
        description="210 = one week of training rows (10 pairs x 168 h / train_stride 8): trader run retrains at most "
        "about weekly; the weekly schedule finds that much new data.",
    )
    horizon_bars: int = Field(24, ge=1, description="Label horizon h in 1h bars.")
    label_clip: float = Field(5.0, gt=0, description="Labels are clipped to +-this (units of rvol_24h * sqrt(h)).")
    min_assets: int = Field(5, ge=2, description="Hours with fewer assets have no rank IC.")
    train_stride: int = Field(
        8,
        ge=1,
        description="Train on every n-th hour of the clock (labels overlap; every hour is still scored).",
    )
    params: dict = Field(
        default_factory=lambda: dict(DEFAULT_PARAMS), description="LightGBM hyper-parameters over trainers.DEFAULTS."
    )
    walk_forward: WalkForwardConfig = Field(
        default_factory=lambda: WalkForwardConfig(
            train_window="365d", test_window="365d", purge="0", embargo="24", min_calibration_rows=2000
        ),
        description="Purged walk-forward windows (embargo >= the label horizon); min_calibration_rows = earlier "
        "OOS rows needed for a fold's expected-return scale.",
    )
    promotion: AlphaPromotion = Field(default_factory=AlphaPromotion, description="IC promotion gate.")


class AlphaModelsConfig(Params):
    """``alpha_portfolio.model``: the 6h and the 24h model (a section given without ``name`` / ``horizon_bars`` gets
    its horizon's: ``h6`` alpha_6h / 6, ``h24`` alpha_24h / 24)."""

    @model_validator(mode="before")
    @classmethod
    def _horizon_defaults(cls, v):
        if isinstance(v, dict):
            v = dict(v)
            for k, (name, h) in {"h6": ("alpha_6h", 6), "h24": ("alpha_24h", 24)}.items():
                if isinstance(v.get(k), dict):
                    v[k] = {"name": name, "horizon_bars": h, **v[k]}
        return v

    h6: AlphaModelConfig = Field(default_factory=lambda: AlphaModelConfig(name="alpha_6h", horizon_bars=6))
    h24: AlphaModelConfig = Field(default_factory=lambda: AlphaModelConfig(name="alpha_24h", horizon_bars=24))

    def horizons(self) -> dict[str, AlphaModelConfig]:
        """``{"6h": h6, "24h": h24}``."""
        return {"6h": self.h6, "24h": self.h24}


def add_labels(features: pd.DataFrame, horizon: int, step_ms: int, clip: float) -> pd.DataFrame:
    """``features`` (one or many symbols: ``symbol, ts, close, rvol_24h``) with ``y`` and ``label_end_ts``.

    ``label_end_ts`` = ``ts + horizon · step_ms`` when that bar exists in the symbol's rows, else -1 and ``y`` NaN.
    """
    f = features.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    fut = f[["symbol", "ts", "close"]].rename(columns={"close": "fut_close"})
    fut["ts"] = fut["ts"] - horizon * step_ms
    fut_c = f[["symbol", "ts"]].merge(fut, on=["symbol", "ts"], how="left")["fut_close"]
    ok = fut_c.notna()
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(fut_c / f["close"]) / (f["rvol_24h"] * math.sqrt(horizon))
    y = y.where(ok & np.isfinite(y)).clip(-clip, clip)
    fut_ts = f["ts"] + horizon * step_ms
    return f.assign(y=y, label_end_ts=np.where(ok & y.notna(), fut_ts.fillna(-1), -1).astype(np.int64))


def training_labels(features: pd.DataFrame, cfg: AlphaModelConfig, step_ms: int) -> pd.DataFrame:
    """:func:`add_labels` plus the training columns: ``y_train`` / ``t1_train`` = ``y`` / ``label_end_ts`` on the
    hours of the ``train_stride`` (NaN / -1 elsewhere; every hour is still scored)."""
    data = add_labels(features, cfg.horizon_bars, step_ms, cfg.label_clip)
    on_stride = (data["ts"] // step_ms) % cfg.train_stride == 0
    return data.assign(
        y_train=data["y"].where(on_stride), t1_train=np.where(on_stride, data["label_end_ts"], -1).astype(np.int64)
    )


def labelled_rows(features: pd.DataFrame, cfg: AlphaModelConfig, step_ms: int) -> int:
    """The rows a training on ``features`` would fit (``PointInTimeFit.labelled_rows``: a label and on the stride),
    without fitting: what :func:`models.retrain.should_retrain` compares with the last training's count."""
    d = training_labels(features, cfg, step_ms)
    return int((d["y_train"].notna() & (d["t1_train"] >= 0)).sum())


@dataclass
class AlphaFit:
    """One horizon's fit: ``scores`` = every input row (``symbol, ts, fold, pred, y, label_end_ts``); ``oof`` = the
    labelled out-of-sample rows; ``fit`` the walk-forward; ``ic`` / ``ic_summary`` / ``calibration`` its figures."""

    fit: PointInTimeFit
    scores: pd.DataFrame
    oof: pd.DataFrame
    ic: pd.Series
    ic_summary: dict
    calibration: pd.DataFrame


def fit_alpha(features: pd.DataFrame, cfg: AlphaModelConfig, step_ms: int) -> AlphaFit:
    """Label, fit the purged walk-forward (module docstring) and score every row of ``features``.

    Args:
        features: every symbol's rows of ``features.alpha`` (``symbol, ts, close`` + :data:`FEATURES`).

    Raises:
        ValueError: no labelled rows or history shorter than the training window.
    """
    data = training_labels(features, cfg, step_ms)
    w = cfg.walk_forward.to_ms(step_ms)
    spec = cfg.spec().model_copy(update={"task": "regressor"})
    pit = fit_point_in_time(
        data,
        FEATURES,
        "y_train",
        spec,
        train_ms=w.train_ms,
        test_ms=w.test_ms,
        purge_ms=w.purge_ms,
        embargo_ms=max(w.embargo_ms, cfg.horizon_bars * step_ms),
        expanding=w.expanding,
        t1col="t1_train",
        min_train_rows=200,
    )
    scores = data[["symbol", "ts", "y", "label_end_ts"]].assign(
        fold=pit.scores["fold"].to_numpy(), pred=pit.scores["p_raw"].to_numpy()
    )
    scales = fold_scales(scores, pit.result.fold_models, cfg.walk_forward.min_calibration_rows)
    scores["scale"] = scores["fold"].map(scales).astype(np.float64)
    scores["pred_cal"] = scores["pred"] * scores["scale"]
    fm = pit.result.fold_models[-1]
    pit.served = CalibratedModel(fm.estimator, Calibrator("scale", scales.get(fm.fold, np.nan)), FEATURES)
    oof = scores[(scores["fold"] >= 0) & scores["y"].notna() & scores["pred"].notna()]
    ic = rank_ic(oof, cfg.min_assets)
    return AlphaFit(pit, scores, oof, ic, ic_stats(ic, cfg.horizon_bars), calibration_deciles(oof))


def fold_scales(scores: pd.DataFrame, fold_models: list, min_rows: int, bounds=(0.0, 1.5)) -> dict[int, float]:
    """The expected-return scale of each fold, point-in-time: the OLS slope of label on prediction over the earlier
    out-of-sample rows whose label had ended before the fold's test start (``label_end_ts < test_start``), clipped to
    ``bounds``; NaN (no calibrated prediction) with fewer than ``min_rows`` such rows. ``scores``: ``fold, pred, y,
    label_end_ts`` per row (:func:`fit_alpha`)."""
    lab = scores[(scores["fold"] >= 0) & scores["y"].notna() & scores["pred"].notna() & (scores["label_end_ts"] >= 0)]
    out = {}
    for fm in fold_models:
        prior = lab[(lab["fold"] < fm.fold) & (lab["label_end_ts"] < fm.test_start)]
        if len(prior) < max(int(min_rows), 2):
            out[fm.fold] = float("nan")
            continue
        x = prior["pred"].to_numpy() - prior["pred"].mean()
        sxx = float((x * x).sum())
        b = float((x * (prior["y"].to_numpy() - prior["y"].mean())).sum() / sxx) if sxx > 0 else float("nan")
        out[fm.fold] = float(np.clip(b, *bounds)) if math.isfinite(b) else float("nan")
    return out


def rank_ic(frame: pd.DataFrame, min_assets: int = 5, pred: str = "pred", y: str = "y") -> pd.Series:
    """Spearman correlation across assets of ``pred`` and ``y`` per ``ts`` (float64 Series indexed by ``ts``, hours with
    at least ``min_assets`` rows and non-constant ranks only)."""
    f = frame[["ts", pred, y]].dropna()
    g = f.groupby("ts")
    n = g[pred].transform("size")
    f = f[n >= min_assets]
    g = f.groupby("ts")
    rx, ry = g[pred].rank(), g[y].rank()
    dx = rx - rx.groupby(f["ts"]).transform("mean")
    dy = ry - ry.groupby(f["ts"]).transform("mean")
    tmp = pd.DataFrame({"ts": f["ts"], "xy": dx * dy, "xx": dx * dx, "yy": dy * dy}).groupby("ts").sum()
    den = np.sqrt(tmp["xx"] * tmp["yy"])
    return (tmp["xy"] / den)[den > 0].astype(np.float64)


def ic_stats(ic: pd.Series, horizon: int) -> dict:
    """``{"n_hours", "ic_mean", "ic_std", "ic_t", "ic_positive", "n_blocks"}`` of an hourly IC series (module docstring:
    the t-statistic uses means over consecutive non-overlapping blocks of ``horizon`` hours of the clock)."""
    if len(ic) == 0:
        return {"n_hours": 0, "ic_mean": float("nan"), "ic_std": float("nan"), "ic_t": float("nan")}
    hour = ic.index.to_numpy(np.int64) // 3_600_000
    blocks = ic.groupby(hour // max(int(horizon), 1)).mean()
    nb = len(blocks)
    sd = float(blocks.std(ddof=1)) if nb > 1 else float("nan")
    t = float(blocks.mean() / (sd / math.sqrt(nb))) if nb > 1 and sd > 0 else float("nan")
    return {
        "n_hours": int(len(ic)),
        "ic_mean": float(ic.mean()),
        "ic_std": float(ic.std(ddof=1)) if len(ic) > 1 else float("nan"),
        "ic_t": t,
        "ic_positive": float((ic > 0).mean()),
        "n_blocks": nb,
    }


def ic_by(oof: pd.DataFrame, labels: pd.Series, horizon: int, min_assets: int = 5) -> pd.DataFrame:
    """:func:`ic_stats` per label of each hour (e.g. the market regime; ``labels`` indexed by ``ts``), one row each."""
    ic = rank_ic(oof, min_assets)
    lab = labels.reindex(ic.index)
    rows = [{"group": k, **ic_stats(s, horizon)} for k, s in ic.groupby(lab.to_numpy(), dropna=True)]
    return pd.DataFrame(rows)


def calibration_deciles(oof: pd.DataFrame, pred: str = "pred", y: str = "y", bins: int = 10) -> pd.DataFrame:
    """Predicted versus realised label per decile of the pooled OOS prediction: ``decile, n, pred_mean, y_mean`` and
    the OLS ``slope`` of ``y`` on ``pred`` (same value on every row; 1 = the expected-return scale is right)."""
    f = oof[[pred, y]].dropna()
    if len(f) < bins:
        return pd.DataFrame(columns=["decile", "n", "pred_mean", "y_mean", "slope"])
    q = pd.qcut(f[pred].rank(method="first"), bins, labels=False)
    t = f.groupby(q).agg(n=(y, "size"), pred_mean=(pred, "mean"), y_mean=(y, "mean")).reset_index(names="decile")
    x = f[pred].to_numpy() - f[pred].mean()
    slope = float((x * (f[y].to_numpy() - f[y].mean())).sum() / (x * x).sum()) if (x * x).sum() > 0 else float("nan")
    return t.assign(slope=slope)


def gate(summary: dict, c: AlphaPromotion, champion: dict | None = None) -> tuple[bool, list[str]]:
    """The IC promotion rule on :func:`ic_stats` figures: ``(passed, reasons)``, one ``PASS``/``FAIL`` line per rule.
    ``champion`` is accepted for the promotion assets' signature and not compared (IC is judged absolutely)."""
    g = lambda k: summary.get(k) if summary.get(k) is not None else float("nan")  # noqa: E731
    rules = [
        (g("n_hours") >= c.min_oos_hours, f"oos hours {int(summary.get('n_hours') or 0)} >= {c.min_oos_hours}"),
        (g("ic_mean") > c.min_ic, f"rank IC {g('ic_mean'):.4f} > {c.min_ic:g}"),
        (g("ic_t") > c.min_ic_t, f"IC t-stat {g('ic_t'):.2f} > {c.min_ic_t:g}"),
    ]
    return all(ok for ok, _ in rules), [("PASS " if ok else "FAIL ") + text for ok, text in rules]


class AlphaSignals(Params):
    """The signal part of ``alpha_portfolio`` (``features``, ``regime``, ``model``, ``score``); the portfolio part is
    ``pipeline.core.alpha_portfolio.AlphaBook`` (``tiers``, ``portfolio``, ``risk``, ``execution``, ``backtest``)."""

    features: AlphaFeatureParams = Field(default_factory=AlphaFeatureParams)
    regime: AlphaRegimeParams = Field(default_factory=AlphaRegimeParams)
    model: AlphaModelsConfig = Field(default_factory=AlphaModelsConfig)
    score: AlphaScoreParams = Field(default_factory=AlphaScoreParams)
