"""The one performance-metrics function of the project, on daily UTC closes (pure).

Every desk's equity curve — hourly, a 15m/1h mix, or the options desk's daily marks — is first sampled at **daily
UTC closes** (:func:`daily_closes`: the last equity *known* at or before each 00:00 UTC boundary, point in time) and
every figure is computed on those daily simple returns, annualised with **365 periods a year** (crypto trades every
day). The same daily returns fed to quantstats (``quantstats.stats.*`` with ``periods=365``) give the same figures
(``tests/core/test_metrics.py``), so a desk can be compared with buy-and-hold and with the other desks.

Definitions (zero risk-free rate; Bacon, *Practical Portfolio Performance Measurement*, 2008, and quantstats):

* ``total_return`` = E_last / E_first − 1 over the daily closes; ``annual_return`` (CAGR) =
  (1 + total)^(365 / n) − 1 with n daily returns; ``volatility`` = std(r, ddof=1) · √365;
  ``sharpe`` = mean(r) / std(r, ddof=1) · √365; ``sortino`` = mean(r) / √(Σ min(r, 0)² / n) · √365;
  ``max_drawdown`` (≤ 0) from the running peak of the daily closes, ``max_drawdown_days`` the longest time from a
  peak until it is regained (or the end); ``calmar`` = annual_return / |max_drawdown|.
* ``exposure``: time-weighted mean of gross exposure (Σ |position value| / equity) over the bars of the curve.
* ``daily_turnover``: pyfolio's ``get_turnover(positions, transactions, denominator="portfolio_value")`` —
  traded value of the UTC day (every entry fill ``notional`` and exit fill ``units × avg_exit_price``, on the day of
  the trade's ``entry_ts`` / ``exit_ts``) divided by that day's closing equity — averaged over the days (pyfolio's
  "Daily turnover"); ``turnover`` = 365 × that (traded value a year over equity). pyfolio's default ``AGB``
  denominator (gross book) is undefined on the many days these desks end flat, hence the portfolio-value one.
* costs: ``costs`` = Σ trade ``fees`` (+ ``slippage`` where the trades carry it; fills otherwise embed slippage in
  their prices); the **gross** curve adds back the costs paid so far (booked at each trade's ``exit_ts``):
  ``total_return_gross``, ``annual_return_gross``, ``sharpe_gross``; ``cost_drag`` = annual_return_gross −
  annual_return; ``cost_bps`` = costs / traded value · 1e4 (per side); ``breakeven_cost_bps`` = gross PnL / traded
  value · 1e4 — the cost per side at which the trades' net PnL would be zero.
* trades (closed): ``n_trades``, ``win_rate`` (pnl > 0), ``profit_factor`` (Σ wins / Σ |losses|), ``expectancy``
  (mean net PnL per trade, quote), ``expectancy_ret`` (mean trade return), ``avg_r`` (mean R multiple).
* ``psr``: probabilistic Sharpe ratio, P(true SR > 0) given the daily SR's skewness and kurtosis — Bailey & López de
  Prado, "The Sharpe Ratio Efficient Frontier", *Journal of Risk* 15(2), 2012, eq. (9):
  PSR(SR*) = Φ((SR − SR*) √(n − 1) / √(1 − γ₃ SR + (γ₄ − 1)/4 SR²)) with the per-day SR, the sample (bias-corrected)
  skewness γ₃ and kurtosis γ₄ (quantstats' ``probabilistic_sharpe_ratio``).
* ``dsr``: deflated Sharpe ratio, PSR(SR₀) with SR₀ the expected maximum Sharpe of ``n_trials`` unskilled
  configurations — Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
  Overfitting and Non-Normality", *Journal of Portfolio Management* 40(5), 2014, eq. (2):
  SR₀ = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))), γ the Euler–Mascheroni constant. V, the variance of the
  trials' Sharpe ratios, defaults to 1 / (n − 1), the sampling variance of a zero-SR estimate (the trials are
  assumed unskilled and independent); N = 1 gives SR₀ = 0 (DSR = PSR). ``dsr_sharpe0`` is SR₀ annualised.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import kurtosis, norm, skew

#: the version of these definitions: part of each backtest asset's input fingerprint (not of its run id), so a
#: warehouse whose runs were scored by older definitions recomputes them in place at the next run
METRICS_VERSION = "daily-utc-365-v1"
DAY_MS = 86_400_000
PERIODS = 365  # daily closes a year
EULER_GAMMA = 0.5772156649015329

#: how many configurations each desk "tried" before the one it reports (docs/decisions.md, issue 15): the DSR's N
N_TRIALS = {
    "baseline": 1,  # one configured threshold and barrier set; nothing is swept in the code
    "setup_gated": 39,  # the tuner's threshold grid: 39 quantiles of the score (pipeline.core.setup_gating)
    "setup_ungated": 1,  # every valid candidate: nothing chosen
    "options_desk": 1,  # rules fixed a priori from the seed, no fitted parameter
}


def daily_closes(ts: np.ndarray, equity: np.ndarray, known_after_ms: int = 0) -> pd.Series:
    """The equity curve at daily UTC closes, point in time.

    Args:
        ts: (n,) int64 epoch ms UTC, ascending. equity: (n,) float64 (quote currency).
        known_after_ms: ``equity[i]`` is known at ``ts[i] + known_after_ms`` (e.g. the bar length when ``ts`` is a
            bar's open time and the equity is marked at its close).

    Returns:
        float64 Series indexed by UTC midnight (``datetime64[ms]``): first the first equity (labelled with its own
        day), then at each 00:00 UTC boundary after it the last equity known at or before that boundary. Equity known
        after the last boundary is not a daily close and is left out.
    """
    t = np.asarray(ts, np.int64) + int(known_after_ms)
    e = np.asarray(equity, np.float64)
    if len(t) == 0:
        return pd.Series(np.zeros(0), index=pd.DatetimeIndex([], dtype="datetime64[ms]"))
    first = -(-t[0] // DAY_MS) * DAY_MS  # first boundary at or after the first known equity
    bounds = np.arange(first, (t[-1] // DAY_MS) * DAY_MS + 1, DAY_MS, dtype=np.int64)
    vals = e[np.searchsorted(t, bounds, side="right") - 1]
    if first > t[0] or len(bounds) == 0:  # the start is not itself a boundary: it opens the first day
        bounds = np.concatenate([[(t[0] // DAY_MS) * DAY_MS], bounds])
        vals = np.concatenate([[e[0]], vals])
    return pd.Series(vals, index=pd.to_datetime(bounds, unit="ms").astype("datetime64[ms]"))


def _index_ms(d: pd.Series) -> np.ndarray:
    """Epoch ms of a daily-closes index."""
    return d.index.as_unit("ms").asi8.astype(np.int64)


def _dd_days(e: np.ndarray) -> float:
    """Longest run of days (daily closes) from a peak until it is regained, or until the end."""
    peak = np.maximum.accumulate(e)
    idx = np.arange(len(e))
    last_peak = np.maximum.accumulate(np.where(e >= peak, idx, 0))
    return float((idx - last_peak).max()) if len(e) else 0.0


def sharpe_stats(r: np.ndarray, n_trials: int = 1, trial_sharpe_var: float | None = None) -> dict[str, float]:
    """Probabilistic and deflated Sharpe ratio of per-period returns ``r`` (Bailey & López de Prado 2012, 2014).

    Args:
        r: (n,) simple returns per period (daily here). n_trials: configurations tried (N ≥ 1).
        trial_sharpe_var: variance of the N trials' per-period Sharpe ratios (default 1 / (n − 1)).

    Returns:
        ``psr`` = PSR(0), ``dsr`` = PSR(SR₀), ``dsr_sharpe0`` = SR₀ · √365, ``skew``, ``kurtosis`` (non-excess),
        ``n_trials``; NaN where n < 4 or the returns are constant.

    Raises:
        ValueError: ``n_trials`` < 1.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    r = np.asarray(r, np.float64)
    n = len(r)
    out = {"n_trials": float(n_trials)}
    sd = r.std(ddof=1) if n > 1 else np.nan
    if n < 4 or not sd > 0:  # the sample kurtosis needs four returns
        return {**out, "psr": np.nan, "dsr": np.nan, "dsr_sharpe0": np.nan, "skew": np.nan, "kurtosis": np.nan}
    sr = r.mean() / sd
    g3, g4 = float(skew(r, bias=False)), float(kurtosis(r, fisher=False, bias=False))
    sigma = math.sqrt(max(1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2, 1e-300) / (n - 1))
    v = 1.0 / (n - 1) if trial_sharpe_var is None else float(trial_sharpe_var)
    sr0 = (
        0.0
        if n_trials == 1
        else math.sqrt(v)
        * ((1 - EULER_GAMMA) * norm.ppf(1 - 1 / n_trials) + EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * math.e)))
    )
    return {
        **out,
        "psr": float(norm.cdf(sr / sigma)),
        "dsr": float(norm.cdf((sr - sr0) / sigma)),
        "dsr_sharpe0": sr0 * math.sqrt(PERIODS),
        "skew": g3,
        "kurtosis": g4,
    }


def _curve(d: pd.Series) -> dict[str, float]:
    """Return, risk and drawdown figures of daily closes ``d`` (see the module docstring)."""
    e = d.to_numpy(np.float64)
    r = e[1:] / e[:-1] - 1.0
    n = len(r)
    total = e[-1] / e[0] - 1.0
    ann = (1.0 + total) ** (PERIODS / n) - 1.0 if n and total > -1 else -1.0
    sd = r.std(ddof=1) if n > 1 else np.nan
    down = math.sqrt(np.sum(np.minimum(r, 0.0) ** 2) / n) if n else np.nan
    mdd = float((e / np.maximum.accumulate(e) - 1.0).min())
    return {
        "total_return": total,
        "annual_return": ann,
        "volatility": sd * math.sqrt(PERIODS),
        "sharpe": r.mean() / sd * math.sqrt(PERIODS) if sd > 0 else np.nan,
        "sortino": r.mean() / down * math.sqrt(PERIODS) if down > 0 else np.nan,
        "max_drawdown": mdd,
        "max_drawdown_days": _dd_days(e),
        "calmar": ann / abs(mdd) if mdd < 0 else np.nan,
    }


def _trade_costs(t: pd.DataFrame) -> np.ndarray:
    c = t["fees"].fillna(0.0).to_numpy(np.float64) if "fees" in t else np.zeros(len(t))
    if "slippage" in t:
        c = c + t["slippage"].fillna(0.0).to_numpy(np.float64)
    return c


def metrics(
    ts: np.ndarray,
    equity: np.ndarray,
    trades: pd.DataFrame | None = None,
    gross_exposure: np.ndarray | None = None,
    *,
    known_after_ms: int = 0,
    n_trials: int = 1,
    trial_sharpe_var: float | None = None,
) -> dict[str, float | str]:
    """Every performance figure of a backtest, on its daily UTC closes with 365 periods a year (module docstring).

    Args:
        ts: (n,) int64 epoch ms UTC, ascending; equity: (n,) float64 quote currency (any bar size).
        trades: closed trades (``pnl``, ``ret``, ``r_multiple``, ``notional``, ``units``, ``entry_ts``, ``exit_ts``,
            ``fees``, and ``avg_exit_price`` or ``exit_price``; optional ``slippage``); None = no trade figures.
        gross_exposure: (n,) fraction of equity per bar; None = no ``exposure``.
        known_after_ms: ``equity[i]`` is known at ``ts[i] + known_after_ms`` (:func:`daily_closes`).
        n_trials, trial_sharpe_var: configurations tried and their Sharpe variance (:func:`sharpe_stats`).

    Returns:
        ``start`` / ``end`` (ISO UTC of the first / last daily close), ``years`` (daily returns / 365), ``n_days``,
        the curve figures, ``psr``, ``dsr``, ``dsr_sharpe0``, ``n_trials``, ``skew``, ``kurtosis``, and with
        ``gross_exposure`` ``exposure``; with ``trades`` the trade, turnover and cost figures. Fractions, not percent.
        Fewer than two daily closes: only ``n_days``.
    """
    d = daily_closes(ts, equity, known_after_ms)
    if len(d) < 2:
        return {"n_days": float(len(d))}
    r = d.to_numpy()[1:] / d.to_numpy()[:-1] - 1.0
    out: dict[str, float | str] = {
        "start": d.index[0].isoformat(),
        "end": d.index[-1].isoformat(),
        "years": len(r) / PERIODS,
        "n_days": float(len(d)),
        **_curve(d),
        **sharpe_stats(r, n_trials, trial_sharpe_var),
    }
    if gross_exposure is not None:
        g, t = np.asarray(gross_exposure, np.float64), np.asarray(ts, np.int64)
        w = np.diff(t).astype(np.float64)
        ok = np.isfinite(g[:-1])
        out["exposure"] = float(np.average(g[:-1][ok], weights=w[ok])) if ok.any() and w[ok].sum() > 0 else np.nan
    if trades is not None:
        out.update(_trade_figures(trades, d, np.asarray(ts, np.int64), np.asarray(equity, np.float64), known_after_ms))
    return out


def _trade_figures(t: pd.DataFrame, d: pd.Series, ts: np.ndarray, equity: np.ndarray, known_after_ms: int) -> dict:
    n = len(t)
    if n == 0:
        nan = np.nan
        return {"n_trades": 0.0, "win_rate": nan, "profit_factor": nan, "expectancy": nan, "expectancy_ret": nan}
    pnl = t["pnl"].to_numpy(np.float64)
    wins, losses = pnl[pnl > 0].sum(), pnl[pnl < 0].sum()
    exit_px = t["avg_exit_price"] if "avg_exit_price" in t else t["exit_price"]  # all exit fills, size-weighted
    entry_val = t["notional"].to_numpy(np.float64)
    exit_val = (t["units"] * exit_px).to_numpy(np.float64)
    costs = _trade_costs(t)
    # traded value per daily close: a fill counts toward the close that ends its UTC day
    close_ms = _index_ms(d)
    traded = np.zeros(len(close_ms))
    for fill_ts, val in ((t["entry_ts"].to_numpy(np.int64), entry_val), (t["exit_ts"].to_numpy(np.int64), exit_val)):
        k = np.searchsorted(close_ms, (fill_ts // DAY_MS + 1) * DAY_MS, side="left")
        ok = (k < len(close_ms)) & (k > 0)  # fills on the first (opening) day or after the last close are outside
        np.add.at(traded, k[ok], np.abs(val[ok]))
    daily_turnover = float(np.mean(traded[1:] / d.to_numpy()[1:]))
    # gross of costs: add back the costs paid up to each bar (booked at the trade's exit)
    order = np.argsort(t["exit_ts"].to_numpy(np.int64), kind="stable")
    x_ts, c_sorted = t["exit_ts"].to_numpy(np.int64)[order], np.cumsum(costs[order])
    j = np.searchsorted(x_ts, ts, side="right") - 1  # exits filled by the bar
    gross_eq = equity + np.where(j >= 0, c_sorted[np.clip(j, 0, None)], 0.0)
    g = _curve(daily_closes(ts, gross_eq, known_after_ms))
    all_traded = float(np.abs(entry_val).sum() + np.abs(exit_val).sum())
    cost = float(costs.sum())
    net_ann = _curve(d)["annual_return"]
    return {
        "n_trades": float(n),
        "win_rate": float((pnl > 0).mean()),
        "profit_factor": float(wins / -losses) if losses < 0 else np.nan,
        "expectancy": float(pnl.mean()),
        "expectancy_ret": float(t["ret"].mean()),
        "avg_r": float(t["r_multiple"].mean()),
        "daily_turnover": daily_turnover,
        "turnover": daily_turnover * PERIODS,
        "costs": cost,
        "cost_bps": cost / all_traded * 1e4 if all_traded > 0 else np.nan,
        "breakeven_cost_bps": (float(pnl.sum()) + cost) / all_traded * 1e4 if all_traded > 0 else np.nan,
        "total_return_gross": g["total_return"],
        "annual_return_gross": g["annual_return"],
        "sharpe_gross": g["sharpe"],
        "cost_drag": g["annual_return"] - net_ann,
    }
