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

import numpy as np
import pandas as pd

from pipeline.core.engine import (  # noqa: F401 - the simulator's public names live beside the one kernel
    EXIT_REASONS,
    TRADE_COLUMNS,
    AssetInput,
    SimParams,
    fine_index,
    run,
)


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
