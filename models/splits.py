"""Purged and embargoed cross-validation splits for overlapping labels (pure).

Follows López de Prado, *Advances in Financial Machine Learning* (2018), ch. 7: every row has a label
window ``[t0, t1]`` (decision time and label end time, epoch ms UTC). A training row whose window
overlaps a test fold's span ``[test_start, test_end]`` (widened by ``purge``) is **purged**; rows
starting within ``embargo`` after a test fold are **embargoed** (k-fold). In walk-forward, training
always precedes the test fold, so the embargo acts as a gap of training rows dropped just before each
test fold. Window sizes are durations in ms; :func:`bars` converts a bar count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.params import Params


def bars(n: int, step_ms: int) -> int:
    """``n`` bars of ``step_ms`` as a duration in ms."""
    return int(n) * int(step_ms)


def parse_window(value: str | int, step_ms: int) -> int:
    """A CLI window: an integer (bars) or a number with a unit ``m``/``h``/``d``/``w`` → milliseconds.

    Raises:
        ValueError: unparseable text.
    """
    s = str(value).strip().lower()
    units = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
    try:
        if s and s[-1] in units:
            return int(float(s[:-1]) * units[s[-1]])
        return bars(int(s), step_ms)
    except ValueError:
        raise ValueError(f"window {value!r}: expected bars (e.g. 720) or a duration like 30d, 12h, 4w") from None


@dataclass(frozen=True)
class WindowSpec:
    """Walk-forward windows in ms (the ``train_ms`` / ``test_ms`` / ``purge_ms`` / ``embargo_ms`` / ``expanding``
    arguments of :func:`walk_forward`), from :meth:`WalkForwardConfig.to_ms`."""

    train_ms: int
    test_ms: int
    purge_ms: int
    embargo_ms: int
    expanding: bool


class WalkForwardConfig(Params):
    """A model's walk-forward section (``walk_forward`` in ``trader.yaml``): windows as bars or durations."""

    train_window: str = Field("365d", description="Training window: bars (e.g. 8760) or a duration (365d, 12w, 48h).")
    test_window: str = Field("120d", description="Test window per fold (bars or duration).")
    purge: str = Field("24", description="Extra purge beyond label overlap (bars or duration).")
    embargo: str = Field("24", description="Embargo/gap between training and each test fold (bars or duration).")
    expanding: bool = Field(True, description="Expanding (true) or rolling (false) training window.")
    min_calibration_rows: int = Field(2000, description="Earlier out-of-fold rows needed before a fold is calibrated.")

    def to_ms(
        self,
        step_ms: int,
        *,
        train: str | int | None = None,
        test: str | int | None = None,
        purge: str | int | None = None,
        embargo: str | int | None = None,
        expanding: bool | None = None,
    ) -> WindowSpec:
        """The windows in ms for bars of ``step_ms`` (:func:`parse_window`); a non-None argument overrides the
        configured value (the CLI's ``--train-window`` ... ``--rolling``).

        Raises:
            ValueError: a window is neither a bar count nor a duration.
        """

        def ms(override, configured):
            return parse_window(configured if override is None else override, step_ms)

        return WindowSpec(
            ms(train, self.train_window),
            ms(test, self.test_window),
            ms(purge, self.purge),
            ms(embargo, self.embargo),
            self.expanding if expanding is None else expanding,
        )


@dataclass(frozen=True)
class Fold:
    """One split: positional indices into the rows passed to the splitter, and its time spans (ms)."""

    k: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_start: int
    test_end: int
    train_start: int
    train_end: int
    n_purged: int
    n_embargoed: int


def _check(t0: np.ndarray, t1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t0, t1 = np.asarray(t0, np.int64), np.asarray(t1, np.int64)
    if t0.shape != t1.shape:
        raise ValueError("t0 and t1 must have the same length")
    if np.any(t1 < t0):
        raise ValueError("label end time t1 precedes t0 for some rows (unlabelled rows must be dropped first)")
    return t0, t1


def _fold(k, t0, t1, test_mask, cand_mask, a, b, purge, embargo, gap_before=False) -> Fold:
    overlap = (t1 >= a - purge) & (t0 <= b + purge)
    emb = (t0 < a) & (t0 >= a - embargo) if gap_before else (t0 > b) & (t0 <= b + embargo)
    train = cand_mask & ~test_mask & ~overlap & ~emb
    tr = np.flatnonzero(train)
    return Fold(
        k,
        tr,
        np.flatnonzero(test_mask),
        int(a),
        int(b),
        int(t0[tr].min()) if len(tr) else -1,
        int(t0[tr].max()) if len(tr) else -1,
        int((cand_mask & ~test_mask & overlap).sum()),
        int((cand_mask & ~test_mask & ~overlap & emb).sum()),
    )


def walk_forward(
    t0,
    t1,
    *,
    train_ms: int,
    test_ms: int,
    purge_ms: int = 0,
    embargo_ms: int = 0,
    expanding: bool = True,
    start_ms: int | None = None,
    min_train_rows: int = 1,
    until_ms: int | None = None,
) -> list[Fold]:
    """Purged walk-forward folds: consecutive test windows of ``test_ms``; training from the ``train_ms``
    before each (rolling) or everything before it (expanding, at least ``train_ms`` of history).

    Args:
        t0, t1: int64 arrays (n,), decision time and label end time per row (any order; pooled symbols allowed).
        start_ms: first test window start (default: first ``t0`` + ``train_ms``).
        until_ms: keep scheduling windows up to this time even where no labelled row falls in them (a
            "forecast" fold has an empty ``test_idx``; its model scores the not-yet-labelled recent rows, so the
            refit schedule is the same whether history ends at ``until_ms`` or later).

    Returns:
        Folds in time order; a fold whose training set has fewer than ``min_train_rows`` rows is skipped.
    """
    t0, t1 = _check(t0, t1)
    if len(t0) == 0:
        return []
    a = int(start_ms if start_ms is not None else t0.min() + train_ms)
    last = int(t0.max()) if until_ms is None else max(int(t0.max()), int(until_ms))
    folds, k = [], 0
    while a <= last:
        b = a + test_ms - 1
        test = (t0 >= a) & (t0 <= b)
        cand = (t0 < a) & ((t0 >= a - train_ms) if not expanding else True)
        f = _fold(k, t0, t1, test, cand, a, b, purge_ms, embargo_ms, gap_before=True)
        if (test.any() or until_ms is not None) and len(f.train_idx) >= min_train_rows:
            folds.append(f)
            k += 1
        a += test_ms
    return folds


def purged_kfold(t0, t1, *, n_splits: int = 5, purge_ms: int = 0, embargo_ms: int = 0) -> list[Fold]:
    """Purged k-fold with embargo: ``n_splits`` contiguous test blocks in time order; training rows are all
    others minus label-window overlaps (purge) and rows starting within ``embargo_ms`` after the block.
    """
    t0, t1 = _check(t0, t1)
    if n_splits < 2:
        raise ValueError("n_splits must be >= 2")
    order = np.argsort(t0, kind="stable")
    blocks = np.array_split(order, n_splits)
    folds = []
    for k, blk in enumerate(blocks):
        if len(blk) == 0:
            continue
        a, b = int(t0[blk].min()), int(t0[blk].max())
        test = np.zeros(len(t0), bool)
        test[blk] = True
        folds.append(_fold(k, t0, t1, test, np.ones(len(t0), bool), a, b, purge_ms, embargo_ms))
    return folds


def folds_table(folds: list[Fold]) -> pd.DataFrame:
    """One row per fold: spans as UTC timestamps and row counts (for logs, metadata and the CLI)."""
    ts = lambda x: pd.Timestamp(x, unit="ms") if x >= 0 else pd.NaT  # noqa: E731
    return pd.DataFrame(
        [
            {
                "fold": f.k,
                "train_start": ts(f.train_start),
                "train_end": ts(f.train_end),
                "test_start": ts(f.test_start),
                "test_end": ts(f.test_end),
                "n_train": len(f.train_idx),
                "n_test": len(f.test_idx),
                "n_purged": f.n_purged,
                "n_embargoed": f.n_embargoed,
            }
            for f in folds
        ]
    )
