"""Walk-forward training with out-of-fold calibration, and the served model object (pure).

For fold ``k`` the estimator is fit on the fold's purged training rows and predicts the test rows
(raw out-of-fold probabilities). The fold's **calibrator is fit only on the raw out-of-fold predictions
of earlier folds** (expanding) **whose labels were known when the fold starts** (label end time ``t1`` before
the fold's test start, when ``t1`` is given), so every calibrated out-of-fold probability is out of sample in
time as well; folds before ``min_calibration_rows`` such predictions exist have no calibrated value.
Forecast folds (empty ``test_idx``, see :func:`models.splits.walk_forward` ``until_ms``) are fit and kept for
:func:`predict_out_of_sample` but add no out-of-fold rows. The
served model (:class:`CalibratedModel`) is the estimator refit on all labelled rows plus a calibrator
fit on all out-of-fold predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.calibration import Calibrator, fit_calibrator, scores
from models.splits import Fold, folds_table, walk_forward
from models.trainers import ModelSpec, feature_importance, make_estimator, predict_score


class CalibratedModel:
    """Estimator + calibrator + feature list; what is logged to MLflow and served as ``@champion``.

    ``predict_proba(X)`` returns an (n, 2) float64 array; ``predict(X)`` the calibrated positive-class
    probability (n,), which is what ``mlflow.pyfunc`` serves. ``X`` is a DataFrame holding ``features``.
    """

    def __init__(self, estimator, calibrator: Calibrator, features: list[str]):
        self.estimator, self.calibrator, self.features = estimator, calibrator, list(features)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibrator(predict_score(self.estimator, X[self.features]))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.predict(X)
        return np.column_stack([1.0 - p, p])


@dataclass
class FoldModel:
    fold: int
    test_start: int
    test_end: int
    estimator: object
    calibrator: Calibrator | None


@dataclass
class WalkForwardResult:
    """``oof``: one row per test row (``row`` = position in the input, ``fold``, ``p_raw``, ``p_cal``, ``y``).
    ``folds``: per-fold spans, sizes, train time and OOS scores (raw and calibrated).
    ``scores_raw`` / ``scores_cal``: OOS scores over rows that have a calibrated probability.
    """

    oof: pd.DataFrame
    folds: pd.DataFrame
    fold_models: list[FoldModel]
    final: CalibratedModel | None
    scores_raw: dict
    scores_cal: dict
    importance: dict = field(default_factory=dict)
    train_seconds: float = 0.0


def walk_forward_fit(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    spec: ModelSpec,
    *,
    calibration: str = "isotonic",
    min_calibration_rows: int = 500,
    fit_final: bool = True,
    t1: np.ndarray | None = None,
) -> WalkForwardResult:
    """Fit ``spec`` per fold, calibrate out of fold, and refit the served model.

    Args:
        X: (n, f) model inputs (float64, NaN allowed for tree models); columns are the feature list.
        y: (n,) 0/1 labels (classifier) or targets (regressor; calibration then skipped).
        folds: from :func:`models.splits.walk_forward` on the same rows.
        t1: (n,) int64 label end times (epoch ms); when given, a fold's calibrator only uses earlier out-of-fold
            rows with ``t1 < test_start`` (labels known at the fold's start). Without it every earlier row counts,
            which leaks up to one label horizon of outcomes into the calibrator.

    Raises:
        ValueError: no folds, or ``y`` has NaN.
    """
    if not folds or all(len(f.test_idx) == 0 for f in folds):
        raise ValueError("walk_forward_fit: no folds with test rows (history shorter than the training window?)")
    y = np.asarray(y, np.float64)
    if np.isnan(y).any():
        raise ValueError("walk_forward_fit: y has NaN; drop unlabelled rows first")
    classify = spec.task == "classifier"
    feats = list(X.columns)
    parts, fold_models, rows = [], [], []
    t_start = time.perf_counter()
    end = np.full(len(y), np.iinfo(np.int64).min) if t1 is None else np.asarray(t1, np.int64)
    prior_p, prior_y, prior_t1 = np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    for f in folds:
        t = time.perf_counter()
        est = make_estimator(spec).fit(X.iloc[f.train_idx], y[f.train_idx])
        fit_s = time.perf_counter() - t
        known = prior_t1 < f.test_start
        cal = (
            fit_calibrator(prior_p[known], prior_y[known], calibration)
            if classify and int(known.sum()) >= min_calibration_rows
            else None
        )
        fold_models.append(FoldModel(f.k, f.test_start, f.test_end, est, cal))
        r = {"fold": f.k, "fit_seconds": round(fit_s, 3)}
        rows.append(r)
        if len(f.test_idx) == 0:  # forecast fold: scores rows that have no label yet
            continue
        p_raw = predict_score(est, X.iloc[f.test_idx])
        p_cal = cal(p_raw) if cal is not None else np.full(len(p_raw), np.nan)
        yt = y[f.test_idx]
        parts.append(pd.DataFrame({"row": f.test_idx, "fold": f.k, "p_raw": p_raw, "p_cal": p_cal, "y": yt}))
        if classify:
            r.update({f"{k}_raw": v for k, v in scores(p_raw, yt).items() if k in ("auc", "brier", "ece", "log_loss")})
            r.update(
                {
                    f"{k}_cal": v
                    for k, v in scores(p_cal, yt).items()
                    if k in ("auc", "brier", "ece", "log_loss", "base_rate")
                }
            )
        prior_p, prior_y, prior_t1 = np.r_[prior_p, p_raw], np.r_[prior_y, yt], np.r_[prior_t1, end[f.test_idx]]
    oof = pd.concat(parts, ignore_index=True)
    table = folds_table(folds).merge(pd.DataFrame(rows), on="fold")
    has_cal = oof["p_cal"].notna()
    s_raw = scores(oof.loc[has_cal, "p_raw"], oof.loc[has_cal, "y"]) if classify else {}
    s_cal = scores(oof.loc[has_cal, "p_cal"], oof.loc[has_cal, "y"]) if classify else {}
    final, imp = None, {}
    if fit_final:
        est = make_estimator(spec).fit(X, y)
        cal = (
            fit_calibrator(oof["p_raw"].to_numpy(), oof["y"].to_numpy(), calibration)
            if classify
            else Calibrator("identity")
        )
        final = CalibratedModel(est, cal, feats)
        imp = feature_importance(est, feats)
    return WalkForwardResult(oof, table, fold_models, final, s_raw, s_cal, imp, time.perf_counter() - t_start)


def predict_out_of_sample(fold_models: list[FoldModel], X: pd.DataFrame, ts: np.ndarray) -> pd.DataFrame:
    """Score rows of **any** series with the fold model whose test window contains each row's ``ts``.

    Rows outside every test window get NaN. Returns ``fold``, ``p_raw``, ``p_cal`` aligned with ``X``.
    """
    ts = np.asarray(ts, np.int64)
    out = pd.DataFrame({"fold": np.full(len(ts), -1), "p_raw": np.nan, "p_cal": np.nan})
    for fm in fold_models:
        m = (ts >= fm.test_start) & (ts <= fm.test_end)
        if not m.any():
            continue
        p = predict_score(fm.estimator, X.loc[m])
        out.loc[m, "fold"] = fm.fold
        out.loc[m, "p_raw"] = p
        if fm.calibrator is not None:
            out.loc[m, "p_cal"] = fm.calibrator(p)
    return out


@dataclass
class PointInTimeFit:
    """A walk-forward fit that scores **every** row point-in-time (see :func:`fit_point_in_time`).

    ``scores``: aligned with the input rows: ``fold`` (-1 = before the first refit), ``p_raw``, ``p_cal``.
    ``served``: the latest fold's estimator + calibrator (identity when that fold had none).
    """

    result: WalkForwardResult
    folds: list[Fold]
    scores: pd.DataFrame
    served: CalibratedModel
    labelled_rows: int


def fit_point_in_time(
    data: pd.DataFrame,
    features: list[str],
    ycol: str,
    spec: ModelSpec,
    *,
    train_ms: int,
    test_ms: int,
    t0col: str = "ts",
    t1col: str = "label_end_ts",
    purge_ms: int = 0,
    embargo_ms: int = 0,
    expanding: bool = True,
    calibration: str = "isotonic",
    min_calibration_rows: int = 365,
    min_train_rows: int = 200,
) -> PointInTimeFit:
    """Purged walk-forward with forecast folds up to the last row, then every row scored by the fold model whose
    window contains it.

    Rows without a label (``ycol`` NaN or ``t1col`` < 0) are never trained on but are scored. The score of a row at
    time ``t`` comes from the model refit at the latest scheduled refit ``<= t``, trained on labels that had ended
    by then and calibrated on earlier out-of-fold scores whose labels had ended too, so history truncated at ``t``
    reproduces it exactly. Used by the options desk's direction models and the setup scanner's meta-model.

    Raises:
        ValueError: no labelled rows, or history shorter than the training window.
    """
    lab_mask = data[ycol].notna().to_numpy() & (data[t1col].to_numpy() >= 0)
    lab = data[lab_mask].reset_index(drop=True)
    if lab.empty:
        raise ValueError(f"fit_point_in_time({ycol}): no labelled rows")
    folds = walk_forward(
        lab[t0col].to_numpy(),
        lab[t1col].to_numpy(),
        train_ms=train_ms,
        test_ms=test_ms,
        purge_ms=purge_ms,
        embargo_ms=embargo_ms,
        expanding=expanding,
        min_train_rows=min_train_rows,
        until_ms=int(data[t0col].max()),
    )
    res = walk_forward_fit(
        lab[features],
        lab[ycol].to_numpy(),
        folds,
        spec,
        calibration=calibration,
        min_calibration_rows=min_calibration_rows,
        fit_final=False,
        t1=lab[t1col].to_numpy(),
    )
    scored = predict_out_of_sample(res.fold_models, data[features], data[t0col].to_numpy())
    fm = res.fold_models[-1]
    served = CalibratedModel(fm.estimator, fm.calibrator or Calibrator("identity"), features)
    return PointInTimeFit(res, folds, scored, served, len(lab))
