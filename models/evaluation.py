"""Out-of-sample evaluation and promotion criteria as data (pure).

A model is promoted to ``@champion`` only if its **out-of-sample, calibrated** scores meet
:class:`PromotionCriteria` (absolute quality) and are not worse than the current champion's
(relative). :func:`decide` returns the verdict with one line per rule, which the blocking asset check
shows in the Dagster UI.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import Field

from models.calibration import scores
from pipeline.core.params import Params


class PromotionCriteria(Params):
    """Thresholds on out-of-sample calibrated scores (configurable per model in ``trader.yaml``)."""

    min_auc: float = Field(0.51, description="OOS ROC AUC must be at least this.")
    max_ece: float = Field(0.03, description="OOS expected calibration error (after calibration) at most this.")
    require_brier_below_base: bool = Field(
        True, description="OOS Brier score must beat always predicting the base rate."
    )
    min_oos_rows: int = Field(1000, description="Out-of-sample rows required to judge.")
    max_brier_regression: float = Field(
        0.0005,
        description="Allowed Brier increase over the current champion (absolute; "
        "retrains on the same data differ by ~1e-4, so 0 blocks them).",
    )


def decide(
    m: dict[str, float], c: PromotionCriteria, champion: dict[str, float] | None = None
) -> tuple[bool, list[str]]:
    """Apply ``c`` to OOS calibrated scores ``m`` (keys of :func:`models.calibration.scores`).

    Returns:
        ``(passed, reasons)`` — one ``"PASS ..."``/``"FAIL ..."`` line per rule.
    """
    rules = [
        (m.get("n", 0) >= c.min_oos_rows, f"oos rows {int(m.get('n', 0))} >= {c.min_oos_rows}"),
        (m.get("auc", float("nan")) >= c.min_auc, f"auc {m.get('auc', float('nan')):.4f} >= {c.min_auc}"),
        (m.get("ece", float("nan")) <= c.max_ece, f"ece {m.get('ece', float('nan')):.4f} <= {c.max_ece}"),
    ]
    if c.require_brier_below_base:
        rules.append(
            (
                m.get("brier", 1) < m.get("brier_base", 0),
                f"brier {m.get('brier', float('nan')):.5f} < base-rate brier {m.get('brier_base', float('nan')):.5f}",
            )
        )
    if champion and not math.isnan(champion.get("brier", float("nan"))):
        rules.append(
            (
                m["brier"] <= champion["brier"] + c.max_brier_regression,
                f"brier {m['brier']:.5f} <= champion {champion['brier']:.5f} + {c.max_brier_regression}",
            )
        )
    return all(ok for ok, _ in rules), [("PASS " if ok else "FAIL ") + text for ok, text in rules]


def scores_by(frame: pd.DataFrame, by: str | list[str], p: str = "p_cal", y: str = "y") -> pd.DataFrame:
    """:func:`scores` per group (e.g. per fold, per regime, per symbol), one row per group."""
    rows = []
    for key, g in frame.groupby(by, dropna=False, sort=True):
        s = scores(g[p].to_numpy(np.float64), g[y].to_numpy(np.float64))
        rows.append({**(dict(zip(by, key)) if isinstance(by, list) else {by: key}), **s})
    return pd.DataFrame(rows)
