"""PLACEHOLDER for ``signals/alpha_scores`` until the scores asset (helper alphaml, ``assets/alpha_portfolio/scores.py``)
is merged: an external spec so the targets' dependency is described in the graph. Delete this file at that merge
(the two define the same key; Dagster refuses to load both)."""

import dagster as dg

from assets.keys import ALPHA_SCORES, GROUP_ALPHA

alpha_scores_placeholder = dg.AssetSpec(
    ALPHA_SCORES,
    group_name=GROUP_ALPHA,
    description="Per symbol and hour the alpha book's cost-adjusted expected return (exp_ret_net), regime, 24 h "
    "volatility, ATR(14) and source (model | fallback): table signals.alpha_scores, built by the scores asset "
    "(placeholder until it is merged).",
)
