"""The bar-by-bar execution simulator shared by every desk's backtest and by paper trading (pure).

:func:`simulate` runs **one symbol** through the project's one numba kernel, the N = 1 case of the multi-asset engine
(:mod:`pipeline.core.engine`, which also holds the resumable state); this module owns the fill model. Decisions are
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
    "denied_max_positions",
    "rebalance",
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
    _R_DENY_MAXPOS,
    _R_REBAL,
) = range(17)

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
    from pipeline.core.engine import AssetInput, run  # the engine builds on this module's fill model

    x = AssetInput(
        bars,
        signal,
        exit_signal,
        limit_price,
        sl_price,
        tp1_price,
        tp_price,
        size_fraction,
        leverage,
        liq_price,
        fine,
        step_ms,
    )
    res = run({"": x}, params, record_bars=record_bars, record_skipped=record_skipped)
    trades, orders = res.trades().drop(columns="asset"), res.orders().drop(columns="asset")
    ts = bars["ts"].to_numpy(np.int64)
    c = bars["close"].to_numpy(np.float64)
    return SimResult(trades, orders, ts, res.asset_bars["position"], c, res.asset_bars["equity"])
