"""The setup scanner's shared wiring: the model in force, scoring, gating and execution reads (no assets here).

Every setup asset (thresholds, signals, backtest, retro-scan) scores and gates candidates the same way, so that a
live signal, a retro-scan and a backtest can never disagree. This module only reads (``warehouse.readers``), loads
the champion through the MLflow resource and calls pure code (:mod:`models.setup_meta`,
:mod:`pipeline.core.setup_gating`, :mod:`pipeline.core.setup_signals`). It is the only asset module the desk's
asset modules import besides ``assets/{common,checks,keys,promotion}``.

**Model in force** = the meta-model's ``@champion`` (latest promoted ``ml.model_runs`` row). Candidates it scored at
training time use their stored point-in-time scores; newer candidates are scored live by the champion loaded from
the project's own MLflow store (:meth:`resources.mlflow_tracking.MlflowTracking.load_champion`). Without a champion
(or with ``meta.enabled: false``) the gate is **rules only**.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from assets.promotion import reconcile_champion
from models.setup_meta import META_FEATURES, meta_dataset, signal_bar_features, with_stored_scores
from pipeline.core.setup_gating import expected_value_pct
from pipeline.core.setup_signals import (
    base_timeframe,
    execution_params,
    gate_scored,
    simulate_book,
    simulate_signals,
)
from pipeline.core.setups import with_atr
from resources.mlflow_tracking import MlflowTracking
from warehouse import io, readers

CODE_VERSION = "2"  # 2: plan leverage/liquidation at execution, last-fill exit_price, status_reason (issue 12)


def model_in_force(con, sc, mlflow: MlflowTracking | None = None) -> pd.Series | None:
    """The champion's ``ml.model_runs`` row (None without one or when ``sc.meta.enabled`` is false).

    With ``mlflow``, ``ml.model_runs.promoted`` is first made to agree with the registry's ``@champion`` alias
    (:func:`assets.promotion.reconcile_champion`, issue 13 item 2), so a champion step that crashed between moving
    the alias and writing the flag never silently turns the gate into rules-only. A warehouse that holds no row of
    the champion's training (``trader live --replay`` builds its own and shares ``trader run``'s MLflow store) gets the
    registry's champion (:meth:`MlflowTracking.champion_record`), scoring live the candidates after its data end (all
    of them with ``meta.score_in_sample``)."""
    if not sc.meta.enabled:
        return None
    if mlflow is not None:
        reconcile_champion(con, mlflow, sc.meta.name)
    champ = readers.champion_run(con, sc.meta.name)
    if champ is None and mlflow is not None and (rec := mlflow.champion_record(sc.meta.name)) is not None:
        # a warehouse without the champion's training row holds none of its stored out-of-sample scores either: only
        # candidates after its data end are scored (live), unless score_in_sample (a replay) scores them all
        champ = pd.Series(rec | ({"data_end": pd.Timestamp(0)} if sc.meta.score_in_sample else {}))
    return champ


def chain_fingerprint(con, sc, champ: pd.Series | None) -> str:
    """Inputs of thresholds, signals and backtest: the candidates' and the meta-model's input fingerprints, the
    champion in force and the ``setup_scanner`` configuration (unchanged → those assets skip their work)."""
    return io.inputs_fingerprint(
        con,
        readers.asset_fingerprints(["signals.setup_candidates", "ml.setup_meta"]),
        extra=sc.model_dump_json() + CODE_VERSION + ("" if champ is None else str(champ.mlflow_run_id)),
    )


#: rows of look-back the meta features of a signal bar need (``models.datasets.model_features``: ``ret_24``)
FEATURE_LOOKBACK = 24


def series_by_key(
    con, exchange: str, keys: pd.DataFrame, tail_only: bool = False
) -> dict[tuple[str, str], pd.DataFrame]:
    """``readers.series`` per distinct ``(symbol, timeframe)`` of ``keys``; ``tail_only``: from
    :data:`FEATURE_LOOKBACK` rows before the series' oldest ``ts`` in ``keys`` (same features at those bars)."""
    out = {}
    for (s, tf), g in keys.groupby(["symbol", "timeframe"], sort=True):
        start = (
            readers.nth_bar_before(con, exchange, s, tf, int(g["ts"].min()), FEATURE_LOOKBACK) if tail_only else None
        )
        out[(s, tf)] = readers.series(con, exchange, s, tf, start)
    return out


def scored_candidates(
    con, mlflow: MlflowTracking, champ: pd.Series | None, sc, exchange: str, candidates: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Valid candidates with ``p_win`` (calibrated; NaN in rules-only mode or before the first calibrated fold),
    ``ev_pct`` (percent of notional, after ``sc.costs``) and ``scored_by`` (``stored`` / ``live`` / None).

    ``candidates``: score only these valid candidates (the live run's new ones; every score is row-wise, so a row
    scores the same alone as among all), their series read from just before them."""
    c = readers.valid_candidates(con) if candidates is None else candidates.copy()
    c["p_win"], c["scored_by"] = np.nan, None
    if champ is not None:
        c, new = with_stored_scores(
            c, readers.setup_meta_scores(con, champ.mlflow_run_id), pd.Timestamp(champ.data_end).value // 1_000_000
        )
        if new.any():  # candidates newer than the champion's data: score them live with the served model
            series = series_by_key(con, exchange, c[new], tail_only=candidates is not None)
            x = meta_dataset(c[new], signal_bar_features(series, c[new]))
            p = pd.Series(
                mlflow.load_champion(sc.meta.name).predict(x[META_FEATURES]), index=x["candidate_id"].to_numpy()
            )
            hit = c["candidate_id"].isin(p.index)
            c.loc[hit, "p_win"] = c.loc[hit, "candidate_id"].map(p).to_numpy()
            c.loc[hit, "scored_by"] = "live"
        c = c.drop(columns=["p_cal", "fold"])
    c["ev_pct"] = expected_value_pct(
        c["p_win"], c["side"], c["entry"], c["sl"], c["tp1"], c["tp2"], sc.gating, sc.costs
    )
    return c


def gated_candidates(
    con, mlflow: MlflowTracking, sc, exchange: str, start_ts: int | None = None, end_ts: int | None = None
) -> tuple[pd.DataFrame, str, pd.Series | None]:
    """Score and gate the valid candidates exactly as live (optionally only ``start_ts <= ts <= end_ts``): ``(frame,
    mode, champion row)``, see :func:`pipeline.core.setup_signals.gate_scored`."""
    champ = model_in_force(con, sc, mlflow)
    c = scored_candidates(con, mlflow, champ, sc, exchange)
    if start_ts is not None:
        c = c[c["ts"] >= start_ts]
    if end_ts is not None:
        c = c[c["ts"] <= end_ts]
    frame, mode = gate_scored(
        c, readers.tuned_thresholds(con) if champ is not None else None, sc.gating, champ is not None
    )
    return frame, mode, champ


def execute(
    con,
    sc,
    exchange: str,
    signals: pd.DataFrame,
    score: str,
    init_cash_each: float,
    start_ts: int | None = None,
    bars_cache: dict | None = None,
):
    """:func:`pipeline.core.setup_signals.simulate_signals` on the stored bars of the signals' series.

    The bars' ``atr`` (the trail distance) is ATR(``signals.atr_period``), the ATR the plans were built with.
    ``bars_cache``: optional dict reused across calls so each series' candles are read once (the backtest simulates
    the gated and the ungated book on the same bars).
    """
    cache = _bars(con, sc, exchange, signals, bars_cache)
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, init_cash_each)
    return simulate_signals(cache, signals, score, params, start_ts)


def _bars(con, sc, exchange: str, signals: pd.DataFrame, bars_cache: dict | None, base_tf: str | None = None) -> dict:
    """The signals' series' bars (and, with ``base_tf``, every traded symbol's ``base_tf`` bars) into the cache."""
    cache = {} if bars_cache is None else bars_cache
    keys = set(signals[["symbol", "timeframe"]].drop_duplicates().itertuples(index=False, name=None))
    if base_tf is not None:
        keys |= {(s, base_tf) for s, _ in keys}
    for s, tf in sorted(keys):
        if (s, tf) not in cache:
            cache[(s, tf)] = with_atr(readers.bars(con, exchange, s, tf), sc.signals.atr_period)
    return cache


def execute_book(
    con, sc, exchange: str, signals: pd.DataFrame, score: str, start_ts: int, bars_cache: dict | None = None
):
    """:func:`pipeline.core.setup_signals.simulate_book` (one shared-cash book of ``sc.init_cash``, at most
    ``sc.max_positions`` open) on the stored bars: ``(book per bar time, trades, {symbol: closes})``, closes from
    ``start_ts`` preferring the 1h series (the buy-and-hold benchmark's)."""
    base_tf = base_timeframe(sc.timeframes)
    cache = _bars(con, sc, exchange, signals, bars_cache, base_tf)
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, sc.init_cash)
    port, trades, _ = simulate_book(cache, signals, score, params, sc.init_cash, sc.max_positions, start_ts, base_tf)
    traded = set(signals[["symbol", "timeframe"]].itertuples(index=False, name=None))
    closes = {}
    for (sym, tf), b in sorted(cache.items()):
        if (sym, tf) in traded and (tf == "1h" or sym not in closes):
            closes[sym] = b[b["ts"] >= start_ts][["ts", "close"]]
    return port, trades, closes
