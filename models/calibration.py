"""Probability calibration and its scores (pure).

* Calibrators: isotonic regression (Zadrozny & Elkan, 2002) and Platt scaling (Platt, 1999: a logistic
  fit on the logit of the raw score), via scikit-learn. They are fit on **out-of-fold** predictions only.
* Scores: Brier score, log loss, ROC AUC (scikit-learn), expected calibration error (ECE: the
  count-weighted mean |observed rate - mean predicted probability| over equal-width bins, Naeini et al.,
  2015) and the reliability table behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from pipeline.core.plots import pyplot, to_png

_EPS = 1e-6


@dataclass
class Calibrator:
    """A fitted map from raw probability to calibrated probability. ``method``: isotonic | sigmoid | identity, or
    ``scale`` (a regressor's prediction times ``model``, a float: the alpha models' expected-return scale,
    :func:`models.alpha.fit_alpha`)."""

    method: str
    model: object | None = None

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        if self.method == "identity" or self.model is None:
            return p
        if self.method == "isotonic":
            return self.model.predict(p)
        if self.method == "scale":
            return p * float(self.model)
        z = np.log(np.clip(p, _EPS, 1 - _EPS) / (1 - np.clip(p, _EPS, 1 - _EPS)))
        return self.model.predict_proba(z.reshape(-1, 1))[:, 1]


def fit_calibrator(
    p_raw: np.ndarray, y: np.ndarray, method: Literal["isotonic", "sigmoid", "identity"] = "isotonic"
) -> Calibrator:
    """Fit a calibrator on out-of-fold raw probabilities ``p_raw`` (n,) and binary outcomes ``y`` (n,).

    Raises:
        ValueError: unknown method, length mismatch, or ``y`` not binary.
    """
    p, y = np.asarray(p_raw, np.float64), np.asarray(y, np.float64)
    if p.shape != y.shape:
        raise ValueError("p_raw and y must have the same shape")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must be 0/1")
    if method == "identity" or len(np.unique(y)) < 2:
        return Calibrator("identity")
    if method == "isotonic":
        return Calibrator("isotonic", IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y))
    if method == "sigmoid":
        z = np.log(np.clip(p, _EPS, 1 - _EPS) / (1 - np.clip(p, _EPS, 1 - _EPS)))
        return Calibrator("sigmoid", LogisticRegression(C=1e6).fit(z.reshape(-1, 1), y))
    raise ValueError(f"unknown calibration method {method!r}; use isotonic, sigmoid or identity")


def reliability_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins over [0, 1]: ``bin_lo``, ``bin_hi``, ``count``, ``p_mean`` (mean prediction), ``y_rate``."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    cnt = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        pm = np.bincount(b, p, n_bins) / cnt
        yr = np.bincount(b, y, n_bins) / cnt
    return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "count": cnt, "p_mean": pm, "y_rate": yr})


def ece(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error (fraction, 0 = perfect) over ``n_bins`` equal-width bins."""
    t = reliability_table(p, y, n_bins)
    t = t[t["count"] > 0]
    return float((t["count"] * (t["y_rate"] - t["p_mean"]).abs()).sum() / max(t["count"].sum(), 1))


def scores(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """Brier score, its base-rate reference, Brier skill, log loss, ECE and AUC of probabilities ``p`` for 0/1 ``y``.

    ``brier_base`` is the Brier score of always predicting the base rate (``rate * (1 - rate)``);
    ``brier_skill = 1 - brier / brier_base`` (> 0 means better than the base rate). AUC is NaN for one class.
    """
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    m = ~(np.isnan(p) | np.isnan(y))
    p, y = p[m], y[m]
    if len(p) == 0:
        return {
            k: float("nan") for k in ("n", "base_rate", "brier", "brier_base", "brier_skill", "log_loss", "ece", "auc")
        }
    rate = float(y.mean())
    base = rate * (1 - rate)
    brier = float(brier_score_loss(y, p)) if len(np.unique(y)) > 1 else float(np.mean((p - y) ** 2))
    return {
        "n": float(len(p)),
        "base_rate": rate,
        "brier": brier,
        "brier_base": base,
        "brier_skill": 1 - brier / base if base > 0 else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])),
        "ece": ece(p, y, n_bins),
        "auc": float(roc_auc_score(y, p)) if len(np.unique(y)) > 1 else float("nan"),
    }


def reliability_plot(tables: dict[str, pd.DataFrame], title: str = "Reliability") -> bytes:
    """PNG bytes of a reliability diagram: one line per table (e.g. ``{"raw": t1, "calibrated": t2}``)."""
    plt = pyplot()
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    for name, t in tables.items():
        t = t[t["count"] > 0]
        ax.plot(t["p_mean"], t["y_rate"], "o-", label=name)
        axh.bar((t["bin_lo"] + t["bin_hi"]) / 2, t["count"], width=0.09, alpha=0.5, label=name)
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(loc="upper left")
    axh.set_xlabel("predicted probability")
    axh.set_ylabel("rows")
    return to_png(fig, dpi=80)
