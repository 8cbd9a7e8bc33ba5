"""The bar-by-bar execution simulator shared by every desk's backtest and by paper trading (pure).

One numba kernel (:func:`_simulate_kernel`) walks the bars of **one symbol** once. Decisions are
taken on a bar's close and executed later, so a backtest and paper trading fed the same bars and
signals can never disagree. The fill model (documented in ``docs/decisions.md`` §simulator):

* **Entry**: a signal on bar ``i`` becomes an order at the open of bar ``i + 1 + latency_bars``.
  Market orders fill at that open plus ``slippage_bps`` against the trade and pay the taker fee.
  A per-signal limit price rests for ``limit_validity_bars`` bars; it fills at the limit (or at the
  open if the bar opens through it) and pays the maker fee; if it never fills the order is
  recorded as ``expired``.
* **Levels** are fixed at the fill from the fill price and the ATR *of the signal bar* (known at
  decision time): SL/TP as ATR multiples or fractions of the entry price, or per-signal prices.
  Leverage and the liquidation price are per signal when given (``leverage`` / ``liq_price`` arrays: the setup
  scanner executes each plan at its own leverage and liquidation price, issue 12 item 10), else ``params.leverage``
  and, with leverage > 1, ``entry * (1 - dir * (1/leverage - maintenance_margin))`` from the fill; an entry whose
  stop is not at least ``liq_buffer`` (fraction of entry) before it, or whose leverage is <= 0, is rejected.
* **Exits**, checked every bar the position is open (also the entry bar unless
  ``stops_on_entry_bar`` is off):

  1. a pending signal exit / time stop (``max_bars``) fills at the open (taker + slippage);
  2. an open that gaps through the stop exits at the open; through TP1/TP at the open (maker);
  3. within the bar, if both the stop and a target are inside its range the **stop is assumed
     hit first** unless finer candles (``fine_*`` arrays) show which level was crossed first;
  4. stops fill at the stop price minus slippage (taker); TP1/TP fill at the level (maker).

  The stop checked in 2-4 is the tightest of the fixed SL, the break-even level and the trail, so a level that
  moved (break-even, trail) obeys the same gap rule as a fixed stop: a bar that opens through it fills at the open
  minus slippage. Every fill therefore lies inside its bar's low-high range widened by slippage (property-tested).

  TP1 closes ``tp1_fraction`` of the position; with ``breakeven_after_tp1`` the stop moves to the
  entry price. The ATR trailing stop (``trail_atr`` x ATR behind the best price since entry) is
  armed once the best price is ``trail_activation_atr`` x ATR in profit (and, with ``trail_after_tp1``, only once
  TP1 has been taken). An opposite signal while in a position reverses it unless ``allow_reverse`` is off
  (then it is ignored). Stop updates (break-even,
  trailing) use only completed bars and take effect from the **next** bar, which is the
  conservative reading of an OHLC bar whose intrabar path is unknown.
* **Accounting** is margin style: fees are paid from cash, realised PnL is added to cash, equity is
  ``cash + units * (close - entry)`` signed by direction (identical to spot accounting at leverage 1).
  Size is ``size_fraction`` of equity as margin times leverage, net of the entry fee (as vectorbt's
  ``size=inf``), or, when ``risk_per_trade > 0`` and a stop exists, the size that loses
  ``risk_per_trade`` of equity at the stop (never more than the margin size).
* **Fills reported**: ``exit_price`` is the **last** fill (the one on ``exit_bar``; the last close for a
  position still ``open``), ``tp1_price`` / ``tp1_bar`` the TP1 partial fill (NaN / -1 without one) and
  ``avg_exit_price`` the size-weighted mean of all exit fills, which reconciles
  ``pnl = direction * units * (avg_exit_price - entry_price) - fees``. (Before issue 12 item 11 ``exit_price`` was
  that mean, a price the exit bar may never have traded.) ``leverage`` is the position's leverage; ``ret`` is
  net PnL over the margin ``notional / leverage``.
* **Ignored signals** (a position open or an entry order waiting, one at a time) leave no trace unless
  ``record_skipped``: then each gets an order row ``skipped_position`` / ``skipped_order`` with ``since_ts`` (the
  blocking position's entry / order's signal), and an entry order still waiting at the data's end a ``pending``
  row, so every signal has exactly one trade or order row (the setup scanner's NEW versus SKIPPED, item 12).
* **MAE/MFE** are the worst/best excursions (fractions of the entry price, signed so that MAE <= 0
  <= MFE) over bars the position was held through, plus the last exit fill.

Semantics match vectorbt ``Portfolio.from_signals`` where both engines have the rule (fixed SL/TP,
fees, next-bar-open entry, stop-first, gap fills) once ``stops_on_entry_bar=False`` (vectorbt starts
checking stops on the bar after entry); ``tests/core/test_simulator.py`` compares them trade by trade.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numba
import numpy as np
import pandas as pd

#: exit reason codes of the ``reason`` column (index = code)
EXIT_REASONS = (
    "signal",
    "sl",
    "tp",
    "trail",
    "breakeven",
    "time",
    "liquidation",
    "open",
    "expired",
    "rejected_liq",
    "rejected_levels",
    "reverse",
    "skipped_position",
    "skipped_order",
    "pending",
)
(
    _R_SIGNAL,
    _R_SL,
    _R_TP,
    _R_TRAIL,
    _R_BE,
    _R_TIME,
    _R_LIQ,
    _R_OPEN,
    _R_EXPIRED,
    _R_REJ_LIQ,
    _R_REJ_LVL,
    _R_REVERSE,
    _R_SKIP_POS,
    _R_SKIP_ORD,
    _R_PENDING,
) = range(15)

TRADE_COLUMNS = (
    "signal_bar",
    "entry_bar",
    "exit_bar",
    "direction",
    "entry_price",
    "exit_price",
    "units",
    "notional",
    "fees",
    "pnl",
    "ret",
    "reason",
    "mae",
    "mfe",
    "r_multiple",
    "tp1_hit",
    "sl_initial",
    "tp_initial",
    "avg_exit_price",
    "tp1_price",
    "tp1_bar",
    "leverage",
)
_NF = len(TRADE_COLUMNS)


@dataclass(frozen=True)
class SimParams:
    """Simulator parameters (units in each field's comment). ``nan`` disables a level.

    Per-signal arrays passed to :func:`simulate` (limit price, SL, TP1, TP, size) override these.
    """

    init_cash: float = 10_000.0  # quote currency
    size_fraction: float = 1.0  # fraction of equity used as margin per trade
    risk_per_trade: float = 0.0  # fraction of equity lost at the stop (0 = off: margin sizing)
    leverage: float = 1.0
    maintenance_margin: float = 0.005  # fraction of notional (Binance USDT-M tier 1)
    liq_buffer: float = 0.0  # stop must sit this fraction of entry before liquidation
    sl_pct: float = math.nan  # stop distance, fraction of entry
    tp_pct: float = math.nan
    sl_atr: float = math.nan  # stop distance, ATR multiples (ATR of the signal bar)
    tp_atr: float = math.nan
    tp1_atr: float = math.nan  # first target, ATR multiples
    tp1_pct: float = math.nan
    tp1_fraction: float = 0.0  # fraction of the position closed at TP1
    breakeven_after_tp1: bool = False
    trail_atr: float = math.nan  # trailing distance, ATR multiples
    trail_activation_atr: float = 0.0  # profit (ATR multiples) before the trail is armed
    max_bars: int = 0  # time stop in bars after entry (0 = off)
    limit_validity_bars: int = 1  # bars a limit entry rests before it expires
    fee_taker_bps: float = 0.0
    fee_maker_bps: float = 0.0
    slippage_bps: float = 0.0  # on market and stop fills, against the trade
    latency_bars: int = 0  # extra bars between decision and execution
    stops_on_entry_bar: bool = True
    trail_after_tp1: bool = False  # arm the ATR trail only once TP1 has been taken (setup scanner)
    allow_reverse: bool = True  # an opposite signal while in a position reverses it (else it is ignored)

    def as_array(self) -> np.ndarray:
        return np.array([float(getattr(self, f.name)) for f in fields(self)], dtype=np.float64)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


_P = {f.name: i for i, f in enumerate(fields(SimParams))}
(
    P_CASH,
    P_SIZE,
    P_RISK,
    P_LEV,
    P_MMR,
    P_LIQBUF,
    P_SLPCT,
    P_TPPCT,
    P_SLATR,
    P_TPATR,
    P_TP1ATR,
    P_TP1PCT,
    P_TP1FRAC,
    P_BE,
    P_TRAIL,
    P_TRAILACT,
    P_MAXBARS,
    P_VALID,
    P_TAKER,
    P_MAKER,
    P_SLIP,
    P_LAT,
    P_ENTRYBAR,
    P_TRAILTP1,
    P_REVERSE,
) = range(len(_P))


@numba.njit(cache=True, inline="always")
def _level(override, fill, d, atr, mult_atr, pct):
    if not math.isnan(override):
        return override
    if not math.isnan(mult_atr) and not math.isnan(atr):
        return fill + d * mult_atr * atr
    if not math.isnan(pct):
        return fill * (1.0 + d * pct)
    return math.nan


@numba.njit(cache=True, inline="always")
def _at(a, i):
    """``a[i]``, or NaN for an absent (length-0) per-signal array."""
    return a[i] if a.shape[0] > 0 else math.nan


@numba.njit(cache=True)
def _first_event(k0, k1, fh, fl, d, stop, target):  # pragma: no cover - compiled
    """In finer bars [k0, k1): 1 if ``target`` is crossed before ``stop``, else 0 (stop first, also on ties)."""
    for k in range(k0, k1):
        stop_hit = fl[k] <= stop if d > 0 else fh[k] >= stop
        if stop_hit:
            return 0
        tgt_hit = fh[k] >= target if d > 0 else fl[k] <= target
        if tgt_hit:
            return 1
    return 0


@numba.njit(cache=True)
def _write_trade(
    t,
    sig_bar,
    entry_bar,
    exit_bar,
    d,
    entry,
    exit_val,
    units0,
    fees,
    gross,
    lev,
    reason,
    worst,
    best,
    sl0,
    tp0,
    tp1_done,
    last_px,
    tp1_px,
    tp1_bar,
):  # pragma: no cover - compiled
    xp = exit_val / units0
    t[0] = sig_bar
    t[1] = entry_bar
    t[2] = exit_bar
    t[3] = d
    t[4] = entry
    t[5] = last_px
    t[6] = units0
    t[7] = units0 * entry
    t[8] = fees
    t[9] = gross - fees
    t[10] = (gross - fees) / (units0 * entry / lev)
    t[11] = reason
    t[12] = min(worst, d * (last_px - entry)) / entry
    t[13] = max(best, d * (last_px - entry)) / entry
    t[14] = (gross - fees) / (units0 * abs(entry - sl0)) if not math.isnan(sl0) and entry != sl0 else math.nan
    t[15] = 1.0 if tp1_done else 0.0
    t[16] = sl0
    t[17] = tp0
    t[18] = xp
    t[19] = tp1_px if tp1_done else math.nan
    t[20] = tp1_bar if tp1_done else -1
    t[21] = lev


@numba.njit(cache=True)
def _write_order(t, s, i, d, reason, sl_, tp_, since):  # pragma: no cover - compiled
    """An order row (entry_bar -1): expired / rejected / skipped / pending; ``since`` (slot 4) = the bar of the
    position (entry) or resting order (signal) that made a signal be skipped, else -1."""
    t[:] = math.nan
    t[0] = s
    t[1] = -1
    t[2] = i
    t[3] = d
    t[4] = since
    t[6] = 0.0
    t[11] = reason
    t[16] = sl_
    t[17] = tp_


@numba.njit(cache=True, error_model="numpy")
def _simulate_kernel(
    o,
    h,
    l,
    c,
    atr,
    sig,
    exit_sig,
    s_limit,
    s_sl,
    s_tp1,
    s_tp,
    s_size,
    s_lev,
    s_liq,
    fine_start,
    fine_end,
    fh,
    fl,
    p,
    record_skips,
    trades,
    pos_out,
    eq_out,
):  # pragma: no cover - compiled
    n = o.shape[0]
    record = pos_out.shape[0] == n
    taker = p[P_TAKER] * 1e-4
    maker = p[P_MAKER] * 1e-4
    slip = p[P_SLIP] * 1e-4
    lat = int(p[P_LAT])
    lev_default = p[P_LEV]
    lev = lev_default  # leverage of the open position
    max_bars = int(p[P_MAXBARS])
    validity = int(p[P_VALID])
    cash = p[P_CASH]
    nt = 0
    # position state (d = direction, 0 = flat)
    d = 0
    units = 0.0
    units0 = 0.0
    entry = 0.0
    entry_bar = -1
    sig_bar = -1
    intrabar_fill = False
    sl = math.nan
    tp = math.nan
    tp1 = math.nan
    sl0 = math.nan
    tp0 = math.nan
    liq = math.nan
    trail = math.nan
    trail_on = False
    be_on = False
    tp1_done = False
    best = 0.0
    worst = 0.0
    atr_e = math.nan
    fees = 0.0
    gross = 0.0
    exit_val = 0.0
    last_px = math.nan  # price of the latest fill that reduced the position
    tp1_px = math.nan
    tp1_bar = -1
    # pending orders: entry executable from bar pe_bar, exit at bar px_bar (-1: none)
    pe_bar = -1
    pe_dir = 0
    pe_sig = -1
    px_bar = -1
    px_reason = _R_SIGNAL
    for i in range(n):
        # 1. pending signal/reverse exit and time stop, at the open
        if d != 0 and ((px_bar >= 0 and i >= px_bar) or (max_bars > 0 and i - entry_bar >= max_bars)):
            reason = px_reason if (px_bar >= 0 and i >= px_bar) else _R_TIME
            price = o[i] * (1.0 - d * slip)
            f = units * price * taker
            g = d * units * (price - entry)
            cash += g - f
            fees += f
            gross += g
            exit_val += units * price
            units = 0.0
            _write_trade(
                trades[nt],
                sig_bar,
                entry_bar,
                i,
                d,
                entry,
                exit_val,
                units0,
                fees,
                gross,
                lev,
                reason,
                worst,
                best,
                sl0,
                tp0,
                tp1_done,
                price,
                tp1_px,
                tp1_bar,
            )
            nt += 1
            d = 0
        if px_bar >= 0 and i >= px_bar:
            px_bar = -1
        # 2. pending entry (a reverse entry fills on the same open as the exit)
        if d == 0 and pe_bar >= 0 and i >= pe_bar:
            s = pe_sig
            dd = pe_dir
            lim = _at(s_limit, s)
            fill = math.nan
            fee_rate = taker
            if math.isnan(lim):
                fill = o[i] * (1.0 + dd * slip)
                pe_bar = -1
            else:
                fee_rate = maker
                if dd > 0 and l[i] <= lim:
                    fill = min(o[i], lim)
                elif dd < 0 and h[i] >= lim:
                    fill = max(o[i], lim)
                if not math.isnan(fill):
                    pe_bar = -1
                elif i - pe_bar + 1 >= validity:
                    _write_order(trades[nt], s, i, dd, _R_EXPIRED, math.nan, math.nan, -1)
                    nt += 1
                    pe_bar = -1
            if not math.isnan(fill):
                a = _at(atr, s)
                sl_ = _level(_at(s_sl, s), fill, -dd, a, p[P_SLATR], p[P_SLPCT])
                tp_ = _level(_at(s_tp, s), fill, dd, a, p[P_TPATR], p[P_TPPCT])
                tp1_ = _level(_at(s_tp1, s), fill, dd, a, p[P_TP1ATR], p[P_TP1PCT]) if p[P_TP1FRAC] > 0 else math.nan
                lev_s = _at(s_lev, s)
                lev_s = lev_default if math.isnan(lev_s) else lev_s
                liq_ = _at(s_liq, s)
                if math.isnan(liq_) and lev_s > 1.0:
                    liq_ = fill * (1.0 - dd * (1.0 / lev_s - p[P_MMR]))
                bad_lvl = (
                    ((not math.isnan(sl_)) and (sl_ - fill) * dd >= 0)
                    or ((not math.isnan(tp_)) and (tp_ - fill) * dd <= 0)
                    or ((not math.isnan(tp1_)) and (tp1_ - fill) * dd <= 0)
                )
                bad_liq = lev_s <= 0.0 or (
                    (not math.isnan(liq_)) and (not math.isnan(sl_)) and (sl_ - liq_) * dd < p[P_LIQBUF] * fill
                )
                if bad_lvl or bad_liq:
                    _write_order(trades[nt], s, i, dd, _R_REJ_LVL if bad_lvl else _R_REJ_LIQ, sl_, tp_, -1)
                    nt += 1
                else:
                    frac = _at(s_size, s)
                    frac = p[P_SIZE] if math.isnan(frac) else frac
                    u = cash * frac * lev_s / (fill * (1.0 + fee_rate))
                    if p[P_RISK] > 0 and not math.isnan(sl_):
                        u = min(u, cash * p[P_RISK] / abs(fill - sl_))
                    if u > 0:
                        d = dd
                        units = u
                        units0 = u
                        entry = fill
                        entry_bar = i
                        sig_bar = s
                        intrabar_fill = fill != o[i] and not math.isnan(lim)
                        sl = sl_
                        tp = tp_
                        tp1 = tp1_
                        sl0 = sl_
                        tp0 = tp_
                        liq = liq_
                        lev = lev_s
                        last_px = math.nan
                        tp1_px = math.nan
                        tp1_bar = -1
                        trail = math.nan
                        trail_on = False
                        be_on = False
                        tp1_done = False
                        best = 0.0
                        worst = 0.0
                        atr_e = a
                        fees = u * fill * fee_rate
                        gross = 0.0
                        exit_val = 0.0
                        cash -= fees
        # 3. stops and targets inside the bar
        if d != 0 and (i > entry_bar or p[P_ENTRYBAR] > 0):
            stop = sl
            reason = _R_SL
            if be_on and (math.isnan(stop) or (entry - stop) * d > 0):
                stop = entry
                reason = _R_BE
            if trail_on and (math.isnan(stop) or (trail - stop) * d > 0):
                stop = trail
                reason = _R_TRAIL
            if math.isnan(stop) and not math.isnan(liq):
                stop = liq
                reason = _R_LIQ
            fav = h[i] if d > 0 else l[i]
            adv = l[i] if d > 0 else h[i]
            done = False
            if not math.isnan(stop) and (o[i] - stop) * d <= 0:  # opened through the stop
                price = o[i] * (1.0 - d * slip)
                f = units * price * taker
                g = d * units * (price - entry)
                cash += g - f
                fees += f
                gross += g
                exit_val += units * price
                units = 0.0
                last_px = price
                done = True
            else:
                stop_hit = (not math.isnan(stop)) and (adv - stop) * d <= 0
                tp1_hit = (not tp1_done) and (not math.isnan(tp1)) and (fav - tp1) * d >= 0
                tp_hit = (not math.isnan(tp)) and (fav - tp) * d >= 0
                if i == entry_bar and intrabar_fill:  # the bar's extreme may predate a limit fill
                    tp1_hit = False
                    tp_hit = False
                target_first = False
                if stop_hit and (tp1_hit or tp_hit):
                    first = tp1 if tp1_hit else tp
                    if (o[i] - first) * d >= 0:
                        target_first = True  # opened through the target
                    elif fine_end[i] > fine_start[i]:
                        target_first = _first_event(fine_start[i], fine_end[i], fh, fl, d, stop, first) == 1
                    if not target_first:
                        tp1_hit = False
                        tp_hit = False
                if tp1_hit:
                    price = tp1 if (o[i] - tp1) * d < 0 else o[i]
                    q = min(units0 * p[P_TP1FRAC], units)
                    f = q * price * maker
                    g = d * q * (price - entry)
                    cash += g - f
                    fees += f
                    gross += g
                    exit_val += q * price
                    units -= q
                    tp1_done = True
                    tp1_px = price
                    tp1_bar = i
                    last_px = price
                    if units <= 1e-12 * units0:
                        units = 0.0
                        reason = _R_TP
                        done = True
                if not done and tp_hit:
                    price = tp if (o[i] - tp) * d < 0 else o[i]
                    f = units * price * maker
                    g = d * units * (price - entry)
                    cash += g - f
                    fees += f
                    gross += g
                    exit_val += units * price
                    units = 0.0
                    last_px = price
                    reason = _R_TP
                    done = True
                if not done and stop_hit:
                    price = stop * (1.0 - d * slip)
                    f = units * price * taker
                    g = d * units * (price - entry)
                    cash += g - f
                    fees += f
                    gross += g
                    exit_val += units * price
                    units = 0.0
                    last_px = price
                    done = True
            if done:
                _write_trade(
                    trades[nt],
                    sig_bar,
                    entry_bar,
                    i,
                    d,
                    entry,
                    exit_val,
                    units0,
                    fees,
                    gross,
                    lev,
                    reason,
                    worst,
                    best,
                    sl0,
                    tp0,
                    tp1_done,
                    last_px,
                    tp1_px,
                    tp1_bar,
                )
                nt += 1
                d = 0
                px_bar = -1
        # 4. the bar completed with the position open: excursions, and the stops of the next bar
        if d != 0:
            best = max(best, d * ((h[i] if d > 0 else l[i]) - entry))
            worst = min(worst, d * ((l[i] if d > 0 else h[i]) - entry))
            if tp1_done and p[P_BE] > 0:
                be_on = True
            if not math.isnan(p[P_TRAIL]) and not math.isnan(atr_e):
                if not trail_on and best >= p[P_TRAILACT] * atr_e and (p[P_TRAILTP1] == 0 or tp1_done):
                    trail_on = True
                if trail_on:
                    cand = entry + d * best - d * p[P_TRAIL] * atr_e
                    if math.isnan(trail) or (cand - trail) * d > 0:
                        trail = cand
        # 5. decisions on this bar's close
        if sig[i] != 0:
            if d == 0 and pe_bar < 0:
                pe_bar = i + 1 + lat
                pe_dir = sig[i]
                pe_sig = i
            elif d != 0 and sig[i] != d and px_bar < 0 and p[P_REVERSE] > 0:
                px_bar = i + 1 + lat
                px_reason = _R_REVERSE
                pe_bar = i + 1 + lat
                pe_dir = sig[i]
                pe_sig = i
            elif record_skips:  # ignored: a position is open or an entry order is waiting
                if d != 0:
                    _write_order(trades[nt], i, i, sig[i], _R_SKIP_POS, math.nan, math.nan, entry_bar)
                else:
                    _write_order(trades[nt], i, i, sig[i], _R_SKIP_ORD, math.nan, math.nan, pe_sig)
                nt += 1
        elif exit_sig[i] and d != 0 and px_bar < 0:
            px_bar = i + 1 + lat
            px_reason = _R_SIGNAL
        if record:
            pos_out[i] = d * units
            eq_out[i] = cash + (d * units * (c[i] - entry) if d != 0 else 0.0)
    if d != 0:  # still open at the end: marked at the last close, no exit fee
        _write_trade(
            trades[nt],
            sig_bar,
            entry_bar,
            n - 1,
            d,
            entry,
            exit_val + units * c[n - 1],
            units0,
            fees,
            gross + d * units * (c[n - 1] - entry),
            lev,
            _R_OPEN,
            worst,
            best,
            sl0,
            tp0,
            tp1_done,
            c[n - 1],
            tp1_px,
            tp1_bar,
        )
        nt += 1
    if record_skips and pe_bar >= 0:  # an entry order still waiting at the data's end (market or resting limit)
        _write_order(trades[nt], pe_sig, n - 1, pe_dir, _R_PENDING, math.nan, math.nan, -1)
        nt += 1
    return nt


class SimResult:
    """Output of :func:`simulate` for one symbol.

    ``trades``: one row per filled trade (``TRADE_COLUMNS`` plus ``signal_ts``/``entry_ts``/``exit_ts``/``tp1_ts``
    epoch ms UTC (-1 none), ``bars_held`` and ``exit_reason`` text; prices in quote currency, ``exit_price`` = last
    fill, ``avg_exit_price`` = size-weighted exit; ``ret`` = net PnL / margin; MAE/MFE fractions of entry).
    ``orders``: signals that never became a position (``expired`` limits, ``rejected_*``; with ``record_skipped``
    also ``skipped_position`` / ``skipped_order`` / ``pending``), columns ``signal_bar, signal_ts, ts, direction,
    status, sl_initial, tp_initial, since_ts``.
    ``bars`` (built on first access): per bar ``ts``, ``position`` (signed units), ``close``, ``equity`` and
    spot-equivalent ``cash`` (``equity - position * close``), quote currency; empty when ``record_bars`` is off.
    """

    def __init__(self, trades: pd.DataFrame, orders: pd.DataFrame, ts, position, close, equity):
        self.trades, self.orders = trades, orders
        self._arrays = (ts, position, close, equity)
        self._bars: pd.DataFrame | None = None

    @property
    def bars(self) -> pd.DataFrame:
        if self._bars is None:
            ts, pos, c, eq = self._arrays
            if len(pos) != len(ts):
                self._bars = pd.DataFrame(columns=["ts", "position", "close", "equity", "cash"])
            else:
                self._bars = pd.DataFrame({"ts": ts, "position": pos, "close": c, "equity": eq, "cash": eq - pos * c})
        return self._bars


@numba.njit(cache=True)
def _first_invalid(ts, o, h, l, c):  # pragma: no cover - compiled
    """(index, code) of the first bad bar: 1 = ts not increasing, 2 = NaN price; (-1, 0) when clean."""
    for i in range(ts.shape[0]):
        if i > 0 and ts[i] <= ts[i - 1]:
            return i, 1
        if math.isnan(o[i]) or math.isnan(h[i]) or math.isnan(l[i]) or math.isnan(c[i]):
            return i, 2
    return -1, 0


_REASONS = np.asarray(EXIT_REASONS, dtype=object)


def fine_index(ts: np.ndarray, step_ms: int, fine_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each coarse bar ``[ts, ts + step_ms)`` the half-open index range of finer bars inside it.

    ``fine_ts`` must be sorted (epoch ms). Bars without finer data get an empty range.
    """
    start = np.searchsorted(fine_ts, ts, side="left").astype(np.int64)
    end = np.searchsorted(fine_ts, ts + step_ms, side="left").astype(np.int64)
    return start, end


def simulate(
    bars: pd.DataFrame,
    signal: np.ndarray,
    params: SimParams,
    *,
    exit_signal: np.ndarray | None = None,
    limit_price=None,
    sl_price=None,
    tp1_price=None,
    tp_price=None,
    size_fraction=None,
    leverage=None,
    liq_price=None,
    fine: pd.DataFrame | None = None,
    step_ms: int | None = None,
    record_bars: bool = True,
    record_skipped: bool = False,
) -> SimResult:
    """Simulate one symbol.

    Args:
        bars: sorted candles with ``ts`` (epoch ms UTC), ``open``, ``high``, ``low``, ``close`` (quote currency)
            and, when ATR levels are used, ``atr`` (same units). ``n`` rows.
        signal: int array (n,): +1 open long / -1 open short, decided on that bar's close; 0 nothing.
        params: :class:`SimParams`.
        exit_signal: bool array (n,): close the position at the next open (after latency).
        limit_price, sl_price, tp1_price, tp_price, size_fraction, leverage, liq_price: optional float arrays (n,),
            read at the signal bar; NaN falls back to ``params`` (a NaN ``liq_price`` is computed from the fill and
            the signal's leverage). A leverage <= 0 rejects the signal (``rejected_liq``).
        fine: finer candles (``ts``, ``high``, ``low``) used only to resolve bars where the stop and a target
            are both inside the range; ``step_ms`` is the coarse bar length (required with ``fine``).
        record_bars: also return per-bar position/cash/equity (off for outcome labelling and sweeps, where
            writing two arrays per bar costs more than the simulation itself).
        record_skipped: also return an order row for every signal that was ignored (``skipped_position`` /
            ``skipped_order``, with ``since_ts`` = entry of the open position / signal of the waiting order) and for
            an entry order still waiting at the data's end (``pending``), so every signal has exactly one row.

    Raises:
        ValueError: arrays of the wrong length, unsorted ``ts`` or NaN prices.
    """
    n = len(bars)
    ts = bars["ts"].to_numpy(np.int64)
    o, h, l, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    bad, code = _first_invalid(ts, o, h, l, c)
    if code == 1:
        raise ValueError(f"simulate: bars must be sorted by ts without duplicates (row {bad})")
    if code == 2:
        raise ValueError(f"simulate: NaN in open/high/low/close (row {bad})")
    atr = bars["atr"].to_numpy(np.float64) if "atr" in bars else np.empty(0)
    sig = np.asarray(signal, dtype=np.int8)
    if sig.shape != (n,):
        raise ValueError(f"simulate: signal has shape {sig.shape}, expected ({n},)")
    ex = np.zeros(n, np.bool_) if exit_signal is None else np.asarray(exit_signal, dtype=np.bool_)

    def arr(x):
        if x is None:
            return np.empty(0)  # absent: the kernel reads NaN
        a = np.asarray(x, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"simulate: per-signal array has shape {a.shape}, expected ({n},)")
        return a

    if fine is not None and len(fine):
        if step_ms is None:
            raise ValueError("simulate: step_ms is required with fine candles")
        fts = fine["ts"].to_numpy(np.int64)
        fs, fe = fine_index(ts, step_ms, fts)
        fh, fl = fine["high"].to_numpy(np.float64), fine["low"].to_numpy(np.float64)
    else:
        fs = fe = np.zeros(n, np.int64)
        fh = fl = np.zeros(0)
    trades = np.empty((int(np.count_nonzero(sig)) + 1, _NF))
    m = n if record_bars else 0
    pos, eq = np.empty(m), np.empty(m)
    nt = _simulate_kernel(
        o,
        h,
        l,
        c,
        atr,
        sig,
        ex,
        arr(limit_price),
        arr(sl_price),
        arr(tp1_price),
        arr(tp_price),
        arr(size_fraction),
        arr(leverage),
        arr(liq_price),
        fs,
        fe,
        fh,
        fl,
        params.as_array(),
        record_skipped,
        trades,
        pos,
        eq,
    )
    t = trades[:nt]
    filled = t[:, 1] >= 0
    cols = {k: t[:, j] for j, k in enumerate(TRADE_COLUMNS)}
    since = np.nan_to_num(cols["entry_price"], nan=-1.0).astype(np.int64)  # order rows: the blocking bar (slot 4)
    for k in ("signal_bar", "entry_bar", "exit_bar", "direction", "tp1_bar"):
        cols[k] = np.nan_to_num(cols[k], nan=-1.0).astype(np.int64)
    sb, eb, xb = cols["signal_bar"], cols["entry_bar"], cols["exit_bar"]
    cols["tp1_ts"] = np.where(cols["tp1_bar"] >= 0, ts[np.clip(cols["tp1_bar"], 0, None)], -1)
    cols["tp1_hit"] = cols["tp1_hit"] == 1.0
    cols["exit_reason"] = _REASONS[cols.pop("reason").astype(np.int64)]
    cols["signal_ts"], cols["entry_ts"], cols["exit_ts"] = (
        ts[sb],
        np.where(eb >= 0, ts[np.clip(eb, 0, None)], -1),
        ts[xb],
    )
    cols["bars_held"] = xb - eb
    trades_df = pd.DataFrame({k: v[filled] for k, v in cols.items()})
    orders = pd.DataFrame(
        {
            "signal_bar": sb[~filled],
            "signal_ts": cols["signal_ts"][~filled],
            "ts": cols["exit_ts"][~filled],
            "direction": cols["direction"][~filled],
            "status": cols["exit_reason"][~filled],
            "sl_initial": cols["sl_initial"][~filled],
            "tp_initial": cols["tp_initial"][~filled],
            "since_ts": np.where(since[~filled] >= 0, ts[np.clip(since[~filled], 0, None)], -1),
        }
    )
    return SimResult(trades_df, orders, ts, pos, c, eq)
