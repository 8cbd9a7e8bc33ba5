"""The research baseline (the reference every desk must beat): dataset, purged walk-forward fit and out-of-sample
predictions of p(TP before SL) for a long entry (pure: frames in, frames out).

Rows are the bars of the training symbols at one timeframe, pooled; features are
:data:`models.datasets.MODEL_FEATURES` (scale-free technical and regime inputs known at the bar's close); the label is
the triple barrier of :func:`models.labels.triple_barrier` (entry at the next open, TP ``tp_atr`` × ATR(14), SL
``sl_atr`` × ATR, time stop ``max_bars``), ending at ``label_end_ts`` which purging uses (López de Prado, *Advances
in Financial Machine Learning*, 2018, ch. 3 and 7). Callers read the series (``warehouse.readers.series``) and pass
them in; nothing here reads or writes storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from models.datasets import MODEL_FEATURES, REGIME_INPUTS, model_features
from models.labels import triple_barrier
from models.splits import Fold, WindowSpec, walk_forward
from models.trainers import BaselineModelConfig
from models.walkforward import WalkForwardResult, predict_out_of_sample, walk_forward_fit


def labelled_frame(series: pd.DataFrame, cfg: BaselineModelConfig) -> pd.DataFrame:
    """Model inputs + triple-barrier label for one series: ``ts``, ``label_end_ts``, ``win``, ``MODEL_FEATURES``.

    Args:
        series: one series from ``warehouse.readers.series`` (candles, ``features.technical`` columns, regimes).
        cfg: the baseline's model configuration (``cfg.label.tp_atr`` / ``sl_atr`` / ``max_bars``).

    Row ``t``'s features use bars ``<= t``; its label uses bars ``t+1 .. label_end_ts``. Unlabelled rows (warm-up ATR,
    the last ``max_bars``) keep NaN ``win``.
    """
    x = model_features(series, series[REGIME_INPUTS])
    lab = triple_barrier(series.assign(atr=series["atr_14"]), cfg.label.tp_atr, cfg.label.sl_atr, cfg.label.max_bars)
    x["label_end_ts"] = lab["label_end_ts"].to_numpy()
    x["win"] = lab["win"].to_numpy()
    x["barrier_ret"] = lab["barrier_ret"].to_numpy()
    return x


def labelled_rows(series_by_symbol: dict[str, pd.DataFrame], cfg: BaselineModelConfig) -> int:
    """The number of rows :func:`train_baseline` would train on: labelled bars (``win`` known, ``label_end_ts >= 0``)
    of the training symbols present in ``series_by_symbol`` (the count :func:`models.retrain.should_retrain` compares)."""
    n = 0
    for sym in cfg.train_symbols:
        s = series_by_symbol.get(sym)
        if s is not None and len(s):
            x = labelled_frame(s, cfg)
            n += int((x["win"].notna() & (x["label_end_ts"] >= 0)).sum())
    return n


@dataclass
class BaselineRun:
    """Training data (pooled training symbols, labelled rows), folds, the walk-forward result and its windows."""

    data: pd.DataFrame
    folds: list[Fold]
    result: WalkForwardResult
    windows: WindowSpec


def train_baseline(
    series_by_symbol: dict[str, pd.DataFrame], cfg: BaselineModelConfig, windows: WindowSpec, fit_final: bool = True
) -> BaselineRun:
    """Pool ``cfg.train_symbols``, label them, split purged walk-forward and fit.

    Args:
        series_by_symbol: ``warehouse.readers.series`` frame per symbol (at least every training symbol).
        cfg: the baseline's model configuration (train symbols, timeframe, label, estimator, calibration).
        windows: walk-forward windows in ms (``train_ms``, ``test_ms``, ``purge_ms``, ``embargo_ms``, ``expanding``).

    Raises:
        ValueError: a training symbol has no rows, or no fold fits in the history.
    """
    parts = []
    for sym in cfg.train_symbols:
        s = series_by_symbol.get(sym)
        if s is None or s.empty:
            raise ValueError(f"no {cfg.timeframe} feature rows for training symbol {sym}; run the features first")
        parts.append(labelled_frame(s, cfg).assign(symbol=sym))
    data = pd.concat(parts, ignore_index=True)
    data = (
        data[data["win"].notna() & (data["label_end_ts"] >= 0)]
        .sort_values(["ts", "symbol"], kind="stable")
        .reset_index(drop=True)
    )
    folds = walk_forward(
        data["ts"].to_numpy(),
        data["label_end_ts"].to_numpy(),
        train_ms=windows.train_ms,
        test_ms=windows.test_ms,
        purge_ms=windows.purge_ms,
        embargo_ms=windows.embargo_ms,
        expanding=windows.expanding,
        min_train_rows=1000,
    )
    spec = cfg.spec()
    res = walk_forward_fit(
        data[MODEL_FEATURES],
        data["win"].to_numpy(),
        folds,
        spec,
        calibration=cfg.calibration,
        min_calibration_rows=cfg.walk_forward.min_calibration_rows,
        fit_final=fit_final,
        t1=data["label_end_ts"].to_numpy(),
    )
    return BaselineRun(data, folds, res, windows)


def predictions_for(
    series_by_symbol: dict[str, pd.DataFrame], symbols: list[str], cfg, run: BaselineRun
) -> pd.DataFrame:
    """Out-of-sample probabilities for every bar of every symbol that falls in a fold's test window.

    Training symbols reuse their out-of-fold predictions; other symbols are scored by the fold model of the window
    (never trained on them, never trained on that window). Symbols without a series are skipped.

    Returns:
        ``symbol``, ``ts`` (epoch ms UTC), ``fold``, ``p_raw``, ``p_cal`` (NaN before the first calibrated fold),
        ``win``, ``label_end_ts``.
    """
    out = []
    oof = run.result.oof.merge(run.data[["symbol", "ts", "label_end_ts", "win"]], left_on="row", right_index=True)
    for sym in symbols:
        if sym in cfg.train_symbols:
            o = oof[oof["symbol"] == sym]
            out.append(o[["symbol", "ts", "fold", "p_raw", "p_cal", "win", "label_end_ts"]])
            continue
        s = series_by_symbol.get(sym)
        if s is None or s.empty:
            continue
        x = labelled_frame(s, cfg)
        p = predict_out_of_sample(run.result.fold_models, x[MODEL_FEATURES], x["ts"].to_numpy())
        keep = p["fold"].to_numpy() >= 0
        out.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "ts": x["ts"].to_numpy()[keep],
                    "fold": p["fold"].to_numpy()[keep],
                    "p_raw": p["p_raw"].to_numpy()[keep],
                    "p_cal": p["p_cal"].to_numpy()[keep],
                    "win": x["win"].to_numpy()[keep],
                    "label_end_ts": x["label_end_ts"].to_numpy()[keep],
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def oof_by_regime(run: BaselineRun) -> pd.DataFrame:
    """Calibrated out-of-fold rows with ``symbol``, ``trend`` (bear/sideways/bull) and ``vol`` (low/normal/high) labels,
    the input of :func:`models.evaluation.scores_by` per regime and per symbol."""
    oof = run.result.oof.merge(run.data[["symbol", "ts", "trend_code", "vol_code"]], left_on="row", right_index=True)
    oof = oof[oof["p_cal"].notna()]
    return oof.assign(
        trend=oof["trend_code"].map({-1.0: "bear", 0.0: "sideways", 1.0: "bull"}),
        vol=oof["vol_code"].map({0.0: "low", 1.0: "normal", 2.0: "high"}),
    )
