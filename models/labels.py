"""Labels with an explicit horizon and the time each label becomes known (pure).

Every label row carries ``label_end_ts``: the open time (epoch ms UTC) of the last bar whose price the
label uses. The label is knowable only after that bar closes (``label_end_ts + step``); purging in
:mod:`models.splits` uses ``[ts, label_end_ts]`` as the row's label window.

* :func:`forward_returns` — fixed-horizon forward returns, raw and volatility-normalised (the alpha
  portfolio's 6h/24h targets).
* :func:`triple_barrier` — first touch of a take-profit, a stop-loss or a time barrier
  (López de Prado, *Advances in Financial Machine Learning*, 2018, ch. 3.4), with the execution
  simulator's conventions: entry at the next bar's open, barriers in ATR multiples of the decision
  bar's ATR, the stop assumed first when both are inside one bar.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.params import Params

#: triple-barrier outcome codes
TP, SL, TIMEOUT = 1, -1, 0


class LabelConfig(Params):
    """The research baseline's triple-barrier label (``research.baseline.label``; arguments of :func:`triple_barrier`)."""

    tp_atr: float = Field(2.0, gt=0, description="Triple-barrier take-profit, ATR(14) multiples from the next open.")
    sl_atr: float = Field(1.5, gt=0, description="Triple-barrier stop-loss, ATR(14) multiples.")
    max_bars: int = Field(24, ge=1, description="Vertical barrier (time stop), bars after entry.")


def forward_returns(bars: pd.DataFrame, horizon_bars: int, step_ms: int, vol_window: int = 24 * 7) -> pd.DataFrame:
    """Forward simple return from the close of bar ``t`` to the close of the bar ``horizon_bars`` later.

    Args:
        bars: one symbol's candles sorted by ``ts`` (epoch ms UTC) with ``close`` (quote currency).
        horizon_bars: horizon in bars; the target bar is found by **time** (``ts + horizon_bars * step_ms``),
            so a gap in the candles gives NaN rather than a longer horizon.
        step_ms: bar length in ms.
        vol_window: bars of past log returns in the volatility used for normalisation (sample std).

    Returns:
        Frame (same rows as ``bars``): ``ts``, ``label_end_ts`` (int64, -1 when unknown), ``fwd_ret`` (fraction),
        ``fwd_ret_vol`` (``fwd_ret / (sigma_t * sqrt(horizon_bars))``, sigma from bars ``<= t`` only).
    """
    ts = bars["ts"].to_numpy(np.int64)
    c = bars["close"].to_numpy(np.float64)
    target = ts + horizon_bars * step_ms
    j = np.searchsorted(ts, target)
    ok = (j < len(ts)) & (ts[np.minimum(j, len(ts) - 1)] == target) if len(ts) else np.zeros(0, bool)
    jj = np.minimum(j, max(len(ts) - 1, 0))
    fwd = np.where(ok, c[jj] / c - 1.0, np.nan)
    logret = pd.Series(np.log(c)).diff()
    sigma = logret.rolling(vol_window, min_periods=vol_window).std().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = fwd / (sigma * np.sqrt(horizon_bars))
    return pd.DataFrame({"ts": ts, "label_end_ts": np.where(ok, target, -1), "fwd_ret": fwd, "fwd_ret_vol": norm})


@numba.njit(cache=True)
def _barrier_kernel(o, h, l, atr, tp_mult, sl_mult, max_bars, side):  # pragma: no cover - compiled
    n = o.shape[0]
    outcome = np.zeros(n, np.int8)
    ret = np.full(n, np.nan)
    end = np.full(n, -1, np.int64)
    for t in range(n - 1):
        a = atr[t]
        if np.isnan(a) or a <= 0:
            continue
        e = o[t + 1]
        up = e + side * tp_mult * a
        dn = e - side * sl_mult * a
        last = min(t + max_bars, n - 1)
        if t + max_bars > n - 1:
            continue  # the time barrier lies beyond the data: label unknown
        res = TIMEOUT
        exit_px = np.nan
        k_end = last
        for k in range(t + 1, last + 1):
            adv = l[k] if side > 0 else h[k]
            fav = h[k] if side > 0 else l[k]
            if k > t + 1 and (o[k] - dn) * side <= 0:  # opened through the stop
                res, exit_px, k_end = SL, o[k], k
                break
            if (adv - dn) * side <= 0:  # stop first when both are inside the bar
                res, exit_px, k_end = SL, dn, k
                break
            if k > t + 1 and (o[k] - up) * side >= 0:
                res, exit_px, k_end = TP, o[k], k
                break
            if (fav - up) * side >= 0:
                res, exit_px, k_end = TP, up, k
                break
        if res == TIMEOUT:
            exit_px = -1.0  # filled below from the close of the last bar
        outcome[t] = res
        ret[t] = exit_px
        end[t] = k_end
    return outcome, ret, end


def triple_barrier(bars: pd.DataFrame, tp_atr: float, sl_atr: float, max_bars: int, side: int = 1) -> pd.DataFrame:
    """Triple-barrier outcome of entering at the next bar's open after each bar.

    Args:
        bars: one symbol's sorted candles with ``ts``, ``open``, ``high``, ``low``, ``close`` (quote currency) and
            ``atr`` (ATR of the decision bar, same units). Rows with NaN ATR get no label.
        tp_atr, sl_atr: barrier distances in ATR multiples from the entry price.
        max_bars: vertical barrier, bars after the entry bar (inclusive). Rows whose vertical barrier lies
            beyond the data are unlabelled (never a premature timeout).
        side: +1 long, -1 short.

    Returns:
        Frame (same rows): ``ts``, ``label_end_ts`` (open time of the exit bar, -1 if unlabelled), ``outcome``
        (1 = TP, -1 = SL, 0 = timeout; NaN when unlabelled), ``barrier_ret`` (fraction, side-adjusted, gross of costs),
        ``win`` (1.0 if TP first, 0.0 otherwise, NaN when unlabelled).
    """
    ts = bars["ts"].to_numpy(np.int64)
    o, h, l, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    atr = bars["atr"].to_numpy(np.float64)
    out, px, end = _barrier_kernel(o, h, l, atr, float(tp_atr), float(sl_atr), int(max_bars), int(side))
    labelled = end >= 0
    px = np.where(px == -1.0, c[np.clip(end, 0, None)], px)
    entry = np.r_[o[1:], np.nan]
    with np.errstate(invalid="ignore"):
        r = side * (px / entry - 1.0)
    return pd.DataFrame(
        {
            "ts": ts,
            "label_end_ts": np.where(labelled, ts[np.clip(end, 0, None)], -1),
            "outcome": np.where(labelled, out.astype(np.float64), np.nan),
            "barrier_ret": np.where(labelled, r, np.nan),
            "win": np.where(labelled, (out == TP).astype(np.float64), np.nan),
        }
    )
