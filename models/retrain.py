"""When a model retrains (issue 16): the one decision every training asset asks before it fits (pure).

A training asset used to refit whenever its inputs' fingerprint changed, so every new candle (or day) trained and
registered a new version. It now refits only when

* ``no_model`` — no version of the model is recorded yet (a cold run trains everything);
* ``code_changed`` — the asset's ``CODE_VERSION`` differs from the one the last version was trained with;
* ``config_changed`` — the model's configuration section (without its ``retrain`` policy) hashes differently
  (a last version recorded by code older than this rule has no hash: it counts as changed, once);
* ``new_labels`` — the labelled rows now exceed those the last version was trained on by at least
  ``min_new_labels`` or by ``min_new_fraction`` of them (either threshold; null turns it off);
* ``forced`` — asked for (``trader run --retrain``, ``trader research train --force`` ...).

Otherwise the asset carries its last version forward (``skipped``) and scoring new rows stays the job of the
assets that serve the champion. A walk-forward trained on ``n`` labelled rows is what a quant would re-run once
about a week of new labels has accrued; the defaults of each model family say so in ``trader.yaml``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from pydantic import Field

from pipeline.core.params import Params


class RetrainPolicy(Params):
    """``<model section>.retrain``: how many new labelled rows make a new training worthwhile."""

    min_new_labels: int | None = Field(
        None, ge=1, description="Retrain once this many labelled rows were added since the last training; null = off."
    )
    min_new_fraction: float | None = Field(
        None,
        gt=0,
        description="Retrain once the new labelled rows reach this fraction of those of the last training; null = off.",
    )


@dataclass(frozen=True)
class TrainingState:
    """What a training saw (recorded in ``ml.model_runs``) or would see now: the asset's ``code_version``, the
    :func:`config_hash` of its configuration and the number of labelled rows (``labelled_rows``)."""

    code_version: str
    config_hash: str | None
    labelled_rows: int


#: the reasons :func:`should_retrain` gives (the first word of its text)
REASONS = ("no_model", "code_changed", "config_changed", "new_labels", "forced", "skipped")


def config_hash(*parts: str) -> str:
    """16 hex digits of SHA-256 over the configuration texts ``parts`` (e.g. a section's ``model_dump_json``)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def should_retrain(
    last: TrainingState | None, now: TrainingState, policy: RetrainPolicy, force: bool = False
) -> tuple[bool, str]:
    """``(retrain?, reason)``: the reason starts with one of :data:`REASONS` and explains it, e.g.
    ``"new_labels: 412 new labelled rows >= 336"`` or ``"skipped: 12 new labelled rows < 336"``.

    Args:
        last: what the model's latest recorded version was trained on (None: no version).
        now: the same figures for the data and configuration of this run.
        policy: the model family's thresholds.
        force: retrain whatever the figures (reason ``forced``).

    The checks run in the order of :data:`REASONS`; new labels = ``now.labelled_rows - last.labelled_rows`` (labels
    only accrue: a candle or a day adds rows and resolves older labels; fewer rows count as 0 new).
    """
    if force:
        return True, "forced: retrain requested"
    if last is None:
        return True, "no_model: no trained version recorded"
    if str(last.code_version) != str(now.code_version):
        return True, f"code_changed: code version {last.code_version} -> {now.code_version}"
    if last.config_hash != now.config_hash:
        was = last.config_hash or "not recorded"
        return True, f"config_changed: configuration {was} -> {now.config_hash}"
    new = max(0, int(now.labelled_rows) - int(last.labelled_rows))
    need = [
        t
        for t in (
            policy.min_new_labels,
            None
            if policy.min_new_fraction is None
            else max(1, math.ceil(policy.min_new_fraction * int(last.labelled_rows))),
        )
        if t is not None
    ]
    if not need:
        return False, f"skipped: {new} new labelled rows (no new-label threshold set)"
    threshold = min(need)
    if new >= threshold:
        return True, f"new_labels: {new} new labelled rows >= {threshold}"
    return False, f"skipped: {new} new labelled rows < {threshold}"
