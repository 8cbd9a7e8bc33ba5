"""Setup scanner gating: expected value after costs, override resolution and threshold tuning (pure).

Seed ``002`` ("models.meta.gating"): EV mode or p(win) threshold mode; global values, per pair/timeframe and per
regime overrides; a tuner that finds, per pair/timeframe, the threshold reaching ``target_winrate_pct`` with maximum
coverage over the last ``window_days`` given at least ``min_closed_samples`` closed signals.

**Expected value** (percent of notional) of a plan with calibrated ``p = p(win)`` (win = TP1 reached before the stop):
``EV = p · win_pct − (1 − p) · loss_pct − cost_pct`` where ``win_pct`` is the gross move of a win: ``tp1_fraction``
closed at TP1 and the runner closed ``ev_runner_fraction`` of the way from entry (break-even) to TP2 (0 = always
stopped at break-even, 1 = always TP2; 0.5 put the mean EV of the real 2018–2026 candidates at −0.20 % against a
realised −0.13 %, 1.0 overstated it at +0.05 %), ``loss_pct`` the gross move to the stop, and ``cost_pct`` the round trip
``costs.round_trip_pct(g.costs_mode)`` of the one cost model :class:`pipeline.core.costs.Costs` (passed in):
``maker`` (limit entry, maker both sides), ``taker`` (taker both sides) or ``auto`` (maker entry, taker exit: the
plan's limit entry and market/stop exits). Slippage is added on taker sides.

**Resolution order** (most specific wins, documented in docs/decisions.md): per regime (``trend × volatility``) →
per pair/timeframe (tuned rows, then configured) → global.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.costs import CostMode, Costs
from pipeline.core.params import Params


class GatingParams(Params):
    """``setup_scanner.gating`` (seed ``models.meta.gating``)."""

    use_ev: bool = True
    min_ev_pct: float = Field(0.0, description="Global EV minimum, percent of notional.")
    threshold: float = Field(0.5, ge=0, le=1, description="Global p(win) minimum when use_ev is false.")
    costs_mode: CostMode = Field(
        "auto",
        description="Round trip of setup_scanner.costs deducted from the EV: auto = "
        "maker (limit) entry + taker exit, as the plans are executed; maker; taker.",
    )
    tp1_fraction: float = Field(0.5, ge=0, le=1)
    ev_runner_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Where the runner exits on a win, as a fraction of the way from entry (0) to TP2 (1).",
    )
    per_pair_tf: dict[str, float] = Field(
        default_factory=dict, description="'BTC/USDT|1h' -> min EV (or p(win)) override."
    )
    per_regime: dict[str, float] = Field(
        default_factory=dict, description="'range|high' / 'trend|low' ... -> override."
    )
    target_winrate_pct: float = Field(55.0, ge=0, le=100)
    window_days: int = Field(180, ge=1)
    min_closed_samples: int = Field(50, ge=1)


def expected_value_pct(p, side, entry, sl, tp1, tp2, g: GatingParams, costs: Costs) -> np.ndarray:
    """EV in percent of notional per plan (arrays broadcast), net of ``costs.round_trip_pct(g.costs_mode)``; NaN where
    ``p`` is NaN."""
    p, side, entry, sl, tp1, tp2 = (np.asarray(x, float) for x in (p, side, entry, sl, tp1, tp2))
    win = (
        100
        * side
        * (g.tp1_fraction * (tp1 / entry - 1) + (1 - g.tp1_fraction) * g.ev_runner_fraction * (tp2 / entry - 1))
    )
    loss = 100 * np.abs(sl / entry - 1)
    return p * win - (1 - p) * loss - costs.round_trip_pct(g.costs_mode)


#: the regime key of a candle without a regime label (the first bars of a series, before the regimes' warm-up): a
#: ``per_regime`` override can target it by this name; no other regime override applies to it
UNKNOWN_REGIME = "unknown"


def regime_key(trend_regime, volatility_level) -> np.ndarray:
    """``trend|low``-style keys: trend = ``trend`` for bull/bear, ``range`` for sideways; volatility as stored.

    A row whose trend or volatility label is missing (NULL / NaN) gets :data:`UNKNOWN_REGIME` instead of a key such as
    ``range|None`` that no override could name.
    """
    trend = pd.Series(np.asarray(trend_regime, dtype=object))
    vol = pd.Series(np.asarray(volatility_level, dtype=object))
    t = np.where(trend.isin(["bull", "bear"]), "trend", "range")
    key = np.char.add(np.char.add(t.astype(str), "|"), vol.astype(str).to_numpy().astype(str)).astype(object)
    key[(trend.isna() | vol.isna()).to_numpy()] = UNKNOWN_REGIME
    return key


def resolve_threshold(
    symbol, timeframe, regime, g: GatingParams, tuned: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Threshold (min EV % or min p(win)) and its source per row: ``regime:<key>`` → ``tuned:<pair|tf>`` →
    ``config:<pair|tf>`` → ``global``.

    Args:
        symbol, timeframe, regime: arrays of equal length (regime keys from :func:`regime_key`).
        tuned: ``signals.setup_thresholds`` rows in force (``symbol``, ``timeframe``, ``threshold``), or a float array
            aligned with the rows (the version in force at each row's time, see :func:`tune_schedule`; NaN = none).
    """
    sym, tf, reg = (np.asarray(x, dtype=object) for x in (symbol, timeframe, regime))
    n = len(sym)
    pair = (pd.Series(sym, dtype=object).astype(str) + "|" + pd.Series(tf, dtype=object).astype(str)).to_numpy(
        dtype=object
    )
    value = np.full(n, g.min_ev_pct if g.use_ev else g.threshold, float)
    source = np.full(n, "global", dtype=object)
    for key, v in g.per_pair_tf.items():
        hit = pair == key
        value[hit], source[hit] = v, f"config:{key}"
    if isinstance(tuned, np.ndarray):
        hit = np.isfinite(tuned)
        value[hit], source[hit] = tuned[hit], "tuned:" + pair[hit]
    elif tuned is not None and len(tuned):
        t = dict(zip(tuned["symbol"] + "|" + tuned["timeframe"], tuned["threshold"]))
        for key, v in t.items():
            if not np.isfinite(v):
                continue
            hit = pair == key
            value[hit], source[hit] = v, f"tuned:{key}"
    for key, v in g.per_regime.items():
        hit = reg == key
        value[hit], source[hit] = v, f"regime:{key}"
    return value, source


def gate(p, ev, threshold, g: GatingParams) -> np.ndarray:
    """Pass mask: ``ev >= threshold`` (EV mode) or ``p >= threshold`` (p(win) mode); NaN scores never pass."""
    x = np.asarray(ev if g.use_ev else p, float)
    return np.nan_to_num(x, nan=-np.inf) >= np.asarray(threshold, float)


def tune_threshold(
    score: np.ndarray, win: np.ndarray, target_winrate: float, min_samples: int, grid: np.ndarray | None = None
) -> dict:
    """Lowest threshold (= maximum coverage) whose passing closed signals reach ``target_winrate`` (fraction) with at
    least ``min_samples`` of them.

    Returns:
        ``{"threshold", "coverage", "winrate", "n_pass", "n", "table", "base_winrate", "best_threshold", "best_winrate",
        "best_coverage", "best_n_pass"}``; ``threshold`` NaN when no grid value qualifies (the gate then falls back
        to the next level of :func:`resolve_threshold`). ``table``: coverage and win rate per grid value (the
        coverage-versus-win-rate table). ``base_winrate``: win rate of every closed signal. ``best_*``: how far the target is — the grid value with the highest win
        rate among those keeping at least ``min_samples`` closed signals (ties: the larger coverage), its win rate
        (fraction), coverage (fraction of the closed signals) and count; NaN / 0 when even the lowest threshold keeps
        fewer than ``min_samples``.
    """
    s, w = np.asarray(score, float), np.asarray(win, float)
    ok = ~(np.isnan(s) | np.isnan(w))
    s, w = s[ok], w[ok]
    if grid is None:
        grid = np.unique(np.quantile(s, np.linspace(0, 0.95, 39), method="lower")) if len(s) else np.zeros(0)
    grid = np.asarray(grid, float)
    order = np.argsort(s, kind="stable")
    s_sorted, wins_from = s[order], np.r_[np.cumsum(w[order][::-1])[::-1], 0.0]  # wins among rows >= position
    first = np.searchsorted(s_sorted, grid, side="left")
    k = len(s) - first
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "threshold": grid,
                "n_pass": k.astype(np.int64),
                "coverage": k / len(s) if len(s) else np.full(len(grid), np.nan),
                "winrate": np.where(k > 0, wins_from[first] / np.maximum(k, 1), np.nan),
            }
        )
    enough = table[table["n_pass"] >= min_samples]
    reach = enough.sort_values(["winrate", "coverage"], ascending=[False, False]).head(1)
    r = reach.iloc[0] if len(reach) else None
    out = {
        "threshold": np.nan,
        "coverage": np.nan,
        "winrate": np.nan,
        "n_pass": 0,
        "n": int(len(s)),
        "table": table,
        "base_winrate": float(w.mean()) if len(w) else np.nan,
        "best_threshold": np.nan if r is None else float(r["threshold"]),
        "best_winrate": np.nan if r is None else float(r["winrate"]),
        "best_coverage": np.nan if r is None else float(r["coverage"]),
        "best_n_pass": 0 if r is None else int(r["n_pass"]),
    }
    good = enough[enough["winrate"] >= target_winrate]
    best = good.sort_values(["coverage", "threshold"], ascending=[False, True]).head(1)
    if best.empty:
        return out
    b = best.iloc[0]
    out.update(
        threshold=float(b["threshold"]),
        coverage=float(b["coverage"]),
        winrate=float(b["winrate"]),
        n_pass=int(b["n_pass"]),
    )
    return out


#: the columns of one tuned threshold version (:func:`tune_schedule`; ``signals.setup_thresholds`` adds the model
#: version and the tuning time)
TUNED_COLUMNS = [
    "symbol",
    "timeframe",
    "valid_from",
    "mode",
    "threshold",
    "coverage",
    "winrate",
    "n_pass",
    "n",
    "target_winrate",
    "min_closed_samples",
    "base_winrate",
    "best_threshold",
    "best_winrate",
    "best_coverage",
    "best_n_pass",
]


def tune_schedule(closed: pd.DataFrame, as_of: np.ndarray, g: GatingParams) -> pd.DataFrame:
    """Point-in-time threshold versions: at each ``as_of`` time, :func:`tune_threshold` per pair/timeframe on the
    signals whose outcome was known by then (``exit_ts < as_of``) and that fired in the last ``g.window_days``.

    Args:
        closed: scored candidates with a label: ``symbol``, ``timeframe``, ``ts``, ``exit_ts`` (epoch ms UTC),
            ``score`` (EV % in EV mode, calibrated p(win) otherwise) and ``win`` (0/1).
        as_of: (k,) int64 epoch ms, the tuning times (e.g. every Monday 00:00 UTC).

    Returns:
        One row per ``as_of`` × pair: ``symbol``, ``timeframe``, ``valid_from`` (= as_of), ``mode`` (``ev`` /
        ``p_win``), ``threshold`` (NaN = no qualifying value: the gate falls back), ``coverage``, ``winrate``,
        ``n_pass``, ``n`` (closed signals in the window), ``target_winrate``, ``min_closed_samples``,
        ``base_winrate`` (all closed signals of the window) and the target's distance ``best_threshold``, ``best_winrate``, ``best_coverage``, ``best_n_pass`` (the highest win
        rate reachable with at least ``min_closed_samples`` closed signals, see :func:`tune_threshold`).
    """
    cols = TUNED_COLUMNS
    rows = []
    window = g.window_days * 86_400_000
    for (sym, tf), d in closed.groupby(["symbol", "timeframe"], sort=True):
        ts, ex = d["ts"].to_numpy(np.int64), d["exit_ts"].to_numpy(np.int64)
        sc, w = d["score"].to_numpy(float), d["win"].to_numpy(float)
        for t in np.asarray(as_of, np.int64):
            m = (ex < t) & (ts >= t - window)
            r = tune_threshold(sc[m], w[m], g.target_winrate_pct / 100, g.min_closed_samples)
            rows.append(
                (
                    sym,
                    tf,
                    int(t),
                    "ev" if g.use_ev else "p_win",
                    r["threshold"],
                    r["coverage"],
                    r["winrate"],
                    r["n_pass"],
                    r["n"],
                    g.target_winrate_pct / 100,
                    g.min_closed_samples,
                    r["base_winrate"],
                    r["best_threshold"],
                    r["best_winrate"],
                    r["best_coverage"],
                    r["best_n_pass"],
                )
            )
    return pd.DataFrame(rows, columns=cols)


def target_reach(rows: pd.DataFrame) -> pd.DataFrame:
    """How far each pair/timeframe is from the tuner's target, at its latest version (the tuning report).

    Args:
        rows: :func:`tune_schedule` rows (``signals.setup_thresholds``).

    Returns:
        One row per ``symbol``, ``timeframe`` (sorted): ``valid_from`` (epoch ms), ``n`` (closed signals in the
        window), ``base_winrate`` (win rate of all of them, coverage 1), ``target_winrate``, ``threshold`` (NaN = not
        reached: the gate falls back), ``best_winrate`` / ``best_coverage`` / ``best_n_pass`` / ``best_threshold``
        (the highest win rate reachable with at least ``min_closed_samples`` closed signals and what it keeps) and
        ``gap_pp`` = target − best win rate in percentage points (≤ 0 when the target is reachable; NaN when fewer than
        ``min_closed_samples`` signals closed in the window).
    """
    last = rows[rows["valid_from"] == rows.groupby(["symbol", "timeframe"])["valid_from"].transform("max")]
    out = last[
        [
            "symbol",
            "timeframe",
            "valid_from",
            "n",
            "base_winrate",
            "target_winrate",
            "threshold",
            "best_winrate",
            "best_coverage",
            "best_n_pass",
            "best_threshold",
        ]
    ].copy()
    out["gap_pp"] = 100 * (out["target_winrate"] - out["best_winrate"])
    return out.sort_values(["symbol", "timeframe"]).reset_index(drop=True)


def threshold_in_force(rows: pd.DataFrame, symbol, timeframe, ts) -> np.ndarray:
    """Per row, the tuned threshold of the latest version with ``valid_from <= ts`` for its pair (NaN if none)."""
    q = pd.DataFrame(
        {
            "symbol": np.asarray(symbol, dtype=object),
            "timeframe": np.asarray(timeframe, dtype=object),
            "ts": np.asarray(ts, np.int64),
            "_i": np.arange(len(ts)),
        }
    )
    if rows is None or rows.empty:
        return np.full(len(q), np.nan)
    v = (
        rows[["symbol", "timeframe", "valid_from", "threshold"]]
        .astype({"valid_from": np.int64})
        .sort_values("valid_from")
    )
    m = pd.merge_asof(
        q.sort_values("ts"), v, left_on="ts", right_on="valid_from", by=["symbol", "timeframe"], direction="backward"
    )
    return m.sort_values("_i")["threshold"].to_numpy(float)
