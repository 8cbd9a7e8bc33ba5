"""The one execution engine of the project: T bars x N assets, one cash account per book, resumable (pure).

One numba kernel (:func:`_engine_kernel`) walks every asset's bars **in time order** (rows sorted by ``ts``, then
asset) and keeps the books of one or more cash accounts. ``pipeline.core.simulator.simulate`` is the N = 1 case of
this kernel; the fill model of each asset (signals with brackets: next-open or limit entry, SL/TP/TP1, break-even,
ATR trail, time stop, leverage and liquidation, fees, slippage, latency, stop first unless finer candles resolve the
bar, reverse on/off, risk-per-trade sizing) is documented there and is unchanged here.

What the engine adds over one symbol alone:

* **Accounts.** Each asset books its fills on an account (``account[a]``). One account for every asset is a
  shared-cash portfolio; one account per asset is today's "equal sleeves" (each sleeve compounds on its own).
* **Time order across assets.** Within one timestamp the engine runs, for every asset with a bar at that time,
  (1) exits at the open (pending signal exits, reversals' exit leg, time stops), then (2) entries at the open, then
  (3) stops and targets inside the bar, (4) the bar's excursions and next-bar stop updates, (5) the decisions on the
  close. Exits at an open therefore free cash before any entry at the same open is sized.
* **Sizing on equity.** An entry's margin is ``size_fraction`` x the account's **equity** (cash plus the open PnL of
  its other positions marked at this bar's open, or at their last close when they have no bar at this time), capped,
  when other positions are open, by the free margin (the lesser of equity and realised cash, minus the margin of the
  open positions), so a long-only book at leverage 1 never needs negative spot cash. With one asset per account the equity at an entry is the cash (the account is
  flat), which is exactly :func:`pipeline.core.simulator.simulate`'s sizing.
* **Max concurrent positions** per account (``max_positions``, 0 = off): an entry that would exceed it is denied at
  its fill with an order row ``denied_max_positions`` (assets at the same open are served in asset order); an entry
  left with no free margin by the account's other open positions gets ``denied_margin``.
* **Resumable.** The full state (per asset: position, its levels, accumulators, pending entry with its per-signal
  values, pending exit, bar counter, last close and time; per account: cash) is an :class:`EngineState` of plain
  numpy arrays that round-trips through :meth:`EngineState.to_dict` (JSON / Parquet-able lists). For any cut,
  ``run(bars[:t])`` then ``run(bars[t:], state=...)`` gives the same trades and per-bar equity as ``run(bars)``:
  rows with reason ``open`` / ``pending`` are the end-of-data snapshot (a position still open marked at the last
  close, an order still waiting) and are not part of the state's history.

Bar indices in the trade rows (``signal_bar``, ``entry_bar``, ``exit_bar``, ``tp1_bar``) count each asset's own bars
from the first bar ever run (they continue across resumes); the ``*_ts`` columns (epoch ms UTC) are written by the
kernel itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

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
    "denied_margin",
    "denied_halted",  # the max-drawdown halt is latched (until EngineState.reset_halt)
    "denied_daily_loss",  # the UTC-day or rolling-24 h loss limit is reached
    "denied_gross_cap",
    "denied_group_cap",
    "denied_asset_cap",
    "denied_symbol_positions",
)

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


def fine_index(ts: np.ndarray, step_ms: int, fine_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each coarse bar ``[ts, ts + step_ms)`` the half-open index range of finer bars inside it.

    ``fine_ts`` must be sorted (epoch ms). Bars without finer data get an empty range.
    """
    start = np.searchsorted(fine_ts, ts, side="left").astype(np.int64)
    end = np.searchsorted(fine_ts, ts + step_ms, side="left").astype(np.int64)
    return start, end


#: reason codes of the kernel rows (index into ``EXIT_REASONS``)
_R_SIGNAL = EXIT_REASONS.index("signal")
_R_SL = EXIT_REASONS.index("sl")
_R_TP = EXIT_REASONS.index("tp")
_R_TRAIL = EXIT_REASONS.index("trail")
_R_BE = EXIT_REASONS.index("breakeven")
_R_TIME = EXIT_REASONS.index("time")
_R_LIQ = EXIT_REASONS.index("liquidation")
_R_OPEN = EXIT_REASONS.index("open")
_R_EXPIRED = EXIT_REASONS.index("expired")
_R_REJ_LIQ = EXIT_REASONS.index("rejected_liq")
_R_REJ_LVL = EXIT_REASONS.index("rejected_levels")
_R_REVERSE = EXIT_REASONS.index("reverse")
_R_SKIP_POS = EXIT_REASONS.index("skipped_position")
_R_SKIP_ORD = EXIT_REASONS.index("skipped_order")
_R_PENDING = EXIT_REASONS.index("pending")
_R_DENY_MAXPOS = EXIT_REASONS.index("denied_max_positions")
_R_REBAL = EXIT_REASONS.index("rebalance")
_R_DENY_MARGIN = EXIT_REASONS.index("denied_margin")
_R_DENY_HALT = EXIT_REASONS.index("denied_halted")
_R_DENY_DAILY = EXIT_REASONS.index("denied_daily_loss")
_R_DENY_GROSS = EXIT_REASONS.index("denied_gross_cap")
_R_DENY_GROUP = EXIT_REASONS.index("denied_group_cap")
_R_DENY_ASSET = EXIT_REASONS.index("denied_asset_cap")
_R_DENY_SYMBOL = EXIT_REASONS.index("denied_symbol_positions")
_NF = len(TRADE_COLUMNS)


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
def _first_invalid(ts, o, h, l, c):  # pragma: no cover - compiled
    """(index, code) of the first bad bar: 1 = ts not increasing, 2 = NaN price; (-1, 0) when clean."""
    for i in range(ts.shape[0]):
        if i > 0 and ts[i] <= ts[i - 1]:
            return i, 1
        if math.isnan(o[i]) or math.isnan(h[i]) or math.isnan(l[i]) or math.isnan(c[i]):
            return i, 2
    return -1, 0


#: per-asset state rows of :attr:`EngineState.assets` (index = row)
STATE_FIELDS = (
    "d",  # direction of the open position (0 flat)
    "units",
    "units0",
    "entry",
    "entry_bar",
    "sig_bar",
    "intrabar_fill",
    "sl",
    "tp",
    "tp1",
    "sl0",
    "tp0",
    "liq",
    "trail",
    "trail_on",
    "be_on",
    "tp1_done",
    "best",
    "worst",
    "atr_e",
    "fees",
    "gross",
    "exit_val",
    "last_px",
    "tp1_px",
    "tp1_bar",
    "lev",
    "pe_bar",  # pending entry executable from this bar (-1 none)
    "pe_dir",
    "pe_sig",
    "px_bar",  # pending exit at this bar (-1 none)
    "px_reason",
    "pe_limit",  # the pending entry's per-signal values, read at its signal bar
    "pe_sl",
    "pe_tp1",
    "pe_tp",
    "pe_size",
    "pe_lev",
    "pe_liq",
    "pe_atr",
    "pe_ts",
    "sig_ts",
    "entry_ts",
    "tp1_ts",
    "bars",  # bars of this asset run so far
    "mark",  # last close
    "last_ts",
    "tw",  # order source 2: the pending target weight (fraction of the account's equity)
    "tw_bar",  # ... executable from this bar (-1 none)
    "group",  # the asset's group id at its latest bar (-1 none)
    "group_e",  # ... at the open position's entry
    "stop_bar",  # order source 2: bar of the last stop exit (re-entry cooldown), -1 none
)
(
    S_D,
    S_UNITS,
    S_UNITS0,
    S_ENTRY,
    S_ENTRY_BAR,
    S_SIG_BAR,
    S_INTRA,
    S_SL,
    S_TP,
    S_TP1,
    S_SL0,
    S_TP0,
    S_LIQ,
    S_TRAIL,
    S_TRAIL_ON,
    S_BE_ON,
    S_TP1_DONE,
    S_BEST,
    S_WORST,
    S_ATR_E,
    S_FEES,
    S_GROSS,
    S_EXIT_VAL,
    S_LAST_PX,
    S_TP1_PX,
    S_TP1_BAR,
    S_LEV,
    S_PE_BAR,
    S_PE_DIR,
    S_PE_SIG,
    S_PX_BAR,
    S_PX_REASON,
    S_PE_LIM,
    S_PE_SL,
    S_PE_TP1,
    S_PE_TP,
    S_PE_SIZE,
    S_PE_LEV,
    S_PE_LIQ,
    S_PE_ATR,
    S_PE_TS,
    S_SIG_TS,
    S_ENTRY_TS,
    S_TP1_TS,
    S_BARS,
    S_MARK,
    S_LAST_TS,
    S_TW,
    S_TW_BAR,
    S_GROUP,
    S_GROUP_E,
    S_STOP_BAR,
) = range(len(STATE_FIELDS))
_NS = len(STATE_FIELDS)

#: kernel row layout: the simulator's trade columns, then times and the asset (``since_ts``: order rows only)
ROW_COLUMNS = (*TRADE_COLUMNS, "signal_ts", "entry_ts", "exit_ts", "tp1_ts", "since_ts", "asset", "group")
_C_SIG_TS, _C_ENTRY_TS, _C_EXIT_TS, _C_TP1_TS, _C_SINCE_TS, _C_ASSET, _C_GROUP = range(_NF, _NF + 7)
_NR = len(ROW_COLUMNS)

#: order-log status codes of order source 2 (index = code)
ORDER_STATUSES = (
    "filled",
    "band",
    "below_min",
    "scaled",  # bought less: the account's cash after fees would have gone negative
    "unchanged",
    "denied_max_positions",
    "denied_halted",
    "denied_daily_loss",
    "denied_gross_cap",
    "denied_group_cap",
    "denied_asset_cap",
    "denied_symbol_positions",
    "capped",  # bought less: an asset, group or gross exposure cap
    "cooldown",  # not re-entered: a stop closed the position fewer than reentry_cooldown_bars bars ago
)
(
    _O_FILLED,
    _O_BAND,
    _O_BELOW_MIN,
    _O_SCALED,
    _O_UNCHANGED,
    _O_DENY_MAXPOS,
    _O_DENY_HALT,
    _O_DENY_DAILY,
    _O_DENY_GROSS,
    _O_DENY_GROUP,
    _O_DENY_ASSET,
    _O_DENY_SYMBOL,
    _O_CAPPED,
    _O_COOLDOWN,
) = range(len(ORDER_STATUSES))
ORDER_LOG_COLUMNS = ("asset", "bar", "ts", "status", "target_weight", "units", "price", "fee")

#: engine (risk) states per account, index = code of the ``state`` outputs
ENGINE_STATES = ("ACTIVE", "REDUCING", "HALTED")
_ACTIVE, _REDUCING, _HALTED = range(3)


@dataclass(frozen=True)
class Limits:
    """Portfolio limits, checked before every entry or increase (exits and stops are never blocked), and the
    rebalance rules of order source 2. 0 disables a rule. Fractions are of the account's equity marked at the
    decision price (cash plus open PnL); each limit applies per account (a shared book, or each sleeve alone).

    The risk state of an account is evaluated at every timestamp's open, before any fill, on its equity with the
    open positions marked at this open (or their last close):

    * ``max_drawdown``: drawdown from the peak equity (open PnL included) at or beyond it latches **HALTED** (no
      entry or increase, reason ``denied_halted``) until :meth:`EngineState.reset_halt` (freqtrade's
      ``MaxDrawdown`` protection on equity, with go-trader#25's manual reset).
    * ``daily_loss``: a loss from the equity at the first bar of the UTC day, **or** from the equity of 24 h ago
      (the first evaluation of the clock hour 24 h back; the rolling window closes the midnight-reset loophole of
      chrisleekr/binance-trading-bot PR#777), at or beyond it is **HALTED** with ``denied_daily_loss`` until both
      are back inside the limit.
    * Drawdown-scaled exposure (seed 004 "drawdown scaling": soft 5 % → 50 % exposure, hard 10 % → 20 %): at a
      drawdown >= ``dd_soft`` new sizes and target weights are multiplied by ``dd_soft_scale``, >= ``dd_hard`` by
      ``dd_hard_scale``; a level is left only once the drawdown is below it by ``dd_recovery`` (the recovery band).
    * Volatility targeting (seed 001 ``VOL_TARGET_DAILY_PCT``): sizes and target weights are multiplied by
      ``min(1, vol_target_daily / vol)``, ``vol`` the EWMA (half-life ``vol_halflife_days``) daily volatility of the
      account's equity returns between evaluations, each squared return scaled by ``1 day / elapsed time`` so that
      any bar size gives a daily figure; it applies once ``vol_min_days`` of history have been seen.
    * An account whose exposure scale is below 1 is **REDUCING** (entries allowed at the reduced size; the weights
      of order source 2 are scaled, so the next rebalance sells down to them), else **ACTIVE**.

    Caps, applied to the size of an entry or an increase, which is cut to fit (denied with the cap's reason when
    nothing fits), on exposure after the fill's own costs: ``max_asset_weight`` (|notional| of one asset),
    ``max_group_weight`` (Σ|notional| of the assets whose group id at this bar equals the asset's; the group id is
    data per asset per bar, so correlation clusters can change over time), ``max_gross`` (Σ|notional|).
    ``max_positions`` (open positions per account) and ``max_per_symbol`` (open positions of the assets that
    share :attr:`AssetInput.symbol`) deny an entry from flat.
    """

    max_positions: int = 0  # concurrent open positions per account
    band_weight: float = 0.0  # rebalance only when |target − current weight| >= this (fraction of equity)
    band_notional: float = 0.0  # ... and when |order notional| >= this (quote currency)
    min_notional: float = 0.0  # orders below this notional (quote) are not sent (after lot rounding and scaling)
    max_per_symbol: int = 0  # open positions per symbol (assets sharing AssetInput.symbol)
    max_asset_weight: float = 0.0  # |notional| of one asset / equity
    max_group_weight: float = 0.0  # Σ|notional| of one group / equity (seed 001 CORR_CLUSTER_CAP_PCT 0.40)
    max_gross: float = 0.0  # Σ|notional| / equity (seed 001 EXPOSURE_CAP_PCT 0.60)
    daily_loss: float = 0.0  # fraction of equity lost in the UTC day or the last 24 h (seed 001 MAX_DAILY_LOSS_PCT)
    max_drawdown: float = 0.0  # drawdown from the peak that latches HALTED (seed 001 MAX_DRAWDOWN_PCT)
    dd_soft: float = 0.0  # drawdown of the first scaling level (seed 004: 0.05)
    dd_soft_scale: float = 1.0  # exposure multiplier at that level (seed 004: 0.5)
    dd_hard: float = 0.0  # drawdown of the second level (seed 004: 0.10)
    dd_hard_scale: float = 1.0  # exposure multiplier at that level (seed 004: 0.2)
    dd_recovery: float = 0.0  # a level is left once the drawdown is this far below it
    vol_target_daily: float = 0.0  # daily volatility of equity aimed at (seed 001 VOL_TARGET_DAILY_PCT 2 % = 0.02)
    vol_halflife_days: float = 10.0  # EWMA half-life of the volatility estimate
    vol_min_days: float = 5.0  # history needed before the volatility scale applies
    reentry_cooldown_bars: int = 0  # order source 2: bars after a stop exit before the asset is bought again

    def as_array(self) -> np.ndarray:
        return np.array([float(getattr(self, f.name)) for f in fields(self)], dtype=np.float64)


(
    L_MAXPOS,
    L_BAND_W,
    L_BAND_N,
    L_MIN_NOTIONAL,
    L_MAX_SYM,
    L_ASSET_W,
    L_GROUP_W,
    L_GROSS,
    L_DAILY,
    L_MAXDD,
    L_DD_SOFT,
    L_DD_SOFT_SCALE,
    L_DD_HARD,
    L_DD_HARD_SCALE,
    L_DD_REC,
    L_VOL_TGT,
    L_VOL_HL,
    L_VOL_MIN,
    L_COOLDOWN,
) = range(len(fields(Limits)))

_RING = 25  # hourly equity samples kept for the rolling-24 h loss
#: per-account risk state rows of :attr:`EngineState.book` (then ``_RING`` hours and ``_RING`` equities)
BOOK_FIELDS = (
    "peak",  # peak equity seen at an evaluation (NaN before the first)
    "day",  # UTC day number (ts // 86_400_000) of the day's first evaluation, -1 none
    "day_equity",  # equity at that evaluation
    "halt",  # max-drawdown latch (1 = HALTED until reset)
    "daily",  # 1 while a daily-loss limit is reached
    "dd_level",  # drawdown-scaling level 0 / 1 (soft) / 2 (hard)
    "vol_var",  # EWMA of squared equity returns, per day
    "vol_seen_ms",  # history the estimate has seen
    "prev_equity",  # equity at the previous evaluation
    "prev_ts",  # its time, -1 none
    "scale",  # exposure multiplier in force (drawdown level x volatility target)
    "state",  # ENGINE_STATES code
)
(B_PEAK, B_DAY, B_DAY_EQ, B_HALT, B_DAILY, B_DD_LEVEL, B_VAR, B_SEEN, B_PREV_EQ, B_PREV_TS, B_SCALE, B_STATE) = range(
    len(BOOK_FIELDS)
)
_B_RING_H = len(BOOK_FIELDS)
_B_RING_EQ = _B_RING_H + _RING
_NB = _B_RING_EQ + _RING


def _blank_book(n_acc: int) -> np.ndarray:
    b = np.zeros((_NB, n_acc))
    b[B_PEAK] = math.nan
    b[B_DAY] = -1.0
    b[B_PREV_TS] = -1.0
    b[B_SCALE] = 1.0
    b[_B_RING_H:_B_RING_EQ] = -1.0
    return b


def _blank_state(n_assets: int) -> np.ndarray:
    s = np.zeros((_NS, n_assets))
    for k in (S_SL, S_TP, S_TP1, S_SL0, S_TP0, S_LIQ, S_TRAIL, S_ATR_E, S_LAST_PX, S_TP1_PX, S_MARK):
        s[k] = math.nan
    for k in (S_ENTRY_BAR, S_SIG_BAR, S_TP1_BAR, S_PE_BAR, S_PE_SIG, S_PX_BAR, S_LAST_TS, S_TW_BAR):
        s[k] = -1.0
    for k in (S_GROUP, S_GROUP_E, S_STOP_BAR):
        s[k] = -1.0
    s[S_LEV] = 1.0
    return s


@dataclass
class EngineState:
    """The engine's full state between two runs: plain arrays, serialisable with :meth:`to_dict`.

    ``assets``: float64 ``(len(STATE_FIELDS), N)``, one row per :data:`STATE_FIELDS` entry (bar indices, times in
    epoch ms and flags stored as exact floats). ``cash``: float64 ``(n_accounts,)``, quote currency (margin-style
    cash: realised PnL minus fees). ``account``: int64 ``(N,)`` account of each asset. ``names``: asset names.
    ``book``: float64 ``(len(BOOK_FIELDS) + 50, n_accounts)``, each account's risk state (peak, day counters,
    halt latch, drawdown level, volatility estimate, the rolling-24 h hourly equity ring).
    """

    assets: np.ndarray
    cash: np.ndarray
    account: np.ndarray
    names: list[str] = field(default_factory=list)
    book: np.ndarray | None = None

    def __post_init__(self):
        if self.book is None:
            self.book = _blank_book(self.cash.shape[0])

    @classmethod
    def new(cls, names: list[str], init_cash, account=None) -> EngineState:
        n = len(names)
        acct = np.zeros(n, np.int64) if account is None else np.asarray(account, np.int64)
        if acct.shape != (n,) or (n and (acct.min() < 0)):
            raise ValueError(f"EngineState: account must be ({n},) non-negative ints")
        n_acc = int(acct.max()) + 1 if n else 1
        cash = np.broadcast_to(np.asarray(init_cash, np.float64), (n_acc,)).copy()
        return cls(_blank_state(n), cash, acct, list(names), _blank_book(n_acc))

    @property
    def last_ts(self) -> int:
        """Latest bar time run (epoch ms), -1 before the first bar."""
        return int(self.assets[S_LAST_TS].max()) if self.assets.shape[1] else -1

    @property
    def engine_state(self) -> list[str]:
        """Each account's :data:`ENGINE_STATES` name after the last evaluation."""
        return [ENGINE_STATES[int(v)] for v in self.book[B_STATE]]

    def reset_halt(self, account: int | None = None) -> None:
        """Release the max-drawdown latch (all accounts, or one) and restart its peak at the current equity (the
        next evaluation's); the daily-loss halt is not latched and needs no reset."""
        cols = slice(None) if account is None else slice(account, account + 1)
        self.book[B_HALT, cols] = 0.0
        self.book[B_PEAK, cols] = math.nan
        self.book[B_DD_LEVEL, cols] = 0.0

    def copy(self) -> EngineState:
        return EngineState(
            self.assets.copy(), self.cash.copy(), self.account.copy(), list(self.names), self.book.copy()
        )

    def to_dict(self) -> dict[str, list]:
        """JSON-able dict: ``names``, ``account``, ``cash``, one list per :data:`STATE_FIELDS` entry and ``book``
        (a list of rows, one per account-state row; NaN as ``None``)."""

        def clean(a):
            return [None if isinstance(v, float) and math.isnan(v) else v for v in a.tolist()]

        out: dict[str, list] = {"names": list(self.names), "account": self.account.tolist(), "cash": clean(self.cash)}
        for k, name in enumerate(STATE_FIELDS):
            out[name] = clean(self.assets[k])
        out["book"] = [clean(row) for row in self.book]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> EngineState:
        def arr(v):
            return np.array([math.nan if x is None else x for x in v], dtype=np.float64)

        assets = np.stack([arr(d[name]) for name in STATE_FIELDS]) if d["names"] else np.zeros((_NS, 0))
        cash = arr(d["cash"])
        book = np.stack([arr(r) for r in d["book"]]) if d.get("book") else None
        return cls(assets, cash, np.asarray(d["account"], np.int64), list(d["names"]), book)


@numba.njit(cache=True)
def _risk_eval(Bk, k, t, eq, lim):  # pragma: no cover - compiled
    """Update account ``k``'s risk state at an evaluation (time ``t`` epoch ms, equity ``eq``); see :class:`Limits`."""
    day_ms = 86_400_000.0
    # peak and the max-drawdown latch
    if math.isnan(Bk[B_PEAK, k]) or eq > Bk[B_PEAK, k]:
        Bk[B_PEAK, k] = eq
    peak = Bk[B_PEAK, k]
    dd = 1.0 - eq / peak if peak > 0 else 0.0
    if lim[L_MAXDD] > 0 and dd >= lim[L_MAXDD]:
        Bk[B_HALT, k] = 1.0
    # daily loss: the UTC day and the rolling 24 h (hourly ring of the first equity seen in each clock hour)
    day = math.floor(t / day_ms)
    if Bk[B_DAY, k] != day:
        Bk[B_DAY, k] = day
        Bk[B_DAY_EQ, k] = eq
    hour = math.floor(t / 3_600_000.0)
    slot = int(hour % _RING)
    if Bk[_B_RING_H + slot, k] != hour:
        Bk[_B_RING_H + slot, k] = hour
        Bk[_B_RING_EQ + slot, k] = eq
    ref = math.nan
    ref_h = math.inf
    for j in range(_RING):
        hj = Bk[_B_RING_H + j, k]
        if hj >= hour - 24 and hj < ref_h:
            ref_h = hj
            ref = Bk[_B_RING_EQ + j, k]
    daily = 0.0
    if lim[L_DAILY] > 0:
        de = Bk[B_DAY_EQ, k]
        if (de > 0 and 1.0 - eq / de >= lim[L_DAILY]) or (ref > 0 and 1.0 - eq / ref >= lim[L_DAILY]):
            daily = 1.0
    Bk[B_DAILY, k] = daily
    # drawdown levels with the recovery band
    lvl = Bk[B_DD_LEVEL, k]
    tgt = 0.0
    if lim[L_DD_HARD] > 0 and dd >= lim[L_DD_HARD]:
        tgt = 2.0
    elif lim[L_DD_SOFT] > 0 and dd >= lim[L_DD_SOFT]:
        tgt = 1.0
    if tgt > lvl:
        lvl = tgt
    else:
        while lvl > tgt:
            edge = lim[L_DD_HARD] if lvl == 2.0 else lim[L_DD_SOFT]
            if dd < edge - lim[L_DD_REC]:
                lvl -= 1.0
            else:
                break
    Bk[B_DD_LEVEL, k] = lvl
    scale = 1.0 if lvl == 0.0 else (lim[L_DD_SOFT_SCALE] if lvl == 1.0 else lim[L_DD_HARD_SCALE])
    # volatility target: EWMA of squared returns between evaluations, each scaled to one day
    pt = Bk[B_PREV_TS, k]
    pe = Bk[B_PREV_EQ, k]
    if pt >= 0 and t > pt and pe > 0:
        dt = t - pt
        r = eq / pe - 1.0
        alpha = 1.0 - 0.5 ** (dt / (lim[L_VOL_HL] * day_ms)) if lim[L_VOL_HL] > 0 else 1.0
        Bk[B_VAR, k] = (1.0 - alpha) * Bk[B_VAR, k] + alpha * r * r * (day_ms / dt)
        Bk[B_SEEN, k] += dt
    Bk[B_PREV_TS, k] = t
    Bk[B_PREV_EQ, k] = eq
    if lim[L_VOL_TGT] > 0 and Bk[B_SEEN, k] >= lim[L_VOL_MIN] * day_ms and Bk[B_VAR, k] > 0:
        scale *= min(1.0, lim[L_VOL_TGT] / math.sqrt(Bk[B_VAR, k]))
    Bk[B_SCALE, k] = scale
    if Bk[B_HALT, k] > 0 or daily > 0:
        Bk[B_STATE, k] = _HALTED
    elif scale < 1.0:
        Bk[B_STATE, k] = _REDUCING
    else:
        Bk[B_STATE, k] = _ACTIVE


@numba.njit(cache=True, inline="always")
def _olog_row(o_, n, a, bar, t, status, w, units, price, fee):  # pragma: no cover - compiled
    """Write order-log row ``n`` (indexed, no row view per fill); nothing when the log is off (length 0)."""
    if o_.shape[0] == 0:
        return
    o_[n, 0] = a
    o_[n, 1] = bar
    o_[n, 2] = t
    o_[n, 3] = status
    o_[n, 4] = w
    o_[n, 5] = units
    o_[n, 6] = price
    o_[n, 7] = fee


@numba.njit(cache=True)
def _n_same_symbol(S, acct, sym, a):  # pragma: no cover - compiled
    """Open positions of the account of asset ``a`` on assets sharing its symbol id (``a`` itself included)."""
    n = 0
    for b in range(S.shape[1]):
        if acct[b] == acct[a] and sym[b] == sym[a] and S[S_D, b] != 0:
            n += 1
    return n


@numba.njit(cache=True, inline="always")
def _cap_units(cap, eq, other, cur_notional, m, cu):  # pragma: no cover - compiled
    """Largest added units ``q`` with ``cur_notional + other + q m <= cap (eq − q cu)`` (``cu``: the fill's cost
    per unit, which lowers equity); ``inf`` when the cap is off."""
    if cap <= 0:
        return math.inf
    return (cap * eq - other - cur_notional) / (m + cap * cu)


@numba.njit(cache=True)
def _row_trade(rows, n, S, a, exit_bar, exit_ts, exit_val, gross, reason, last_px):  # pragma: no cover - compiled
    t = rows[n]
    d = S[S_D, a]
    entry = S[S_ENTRY, a]
    units0 = S[S_UNITS0, a]
    fees = S[S_FEES, a]
    lev = S[S_LEV, a]
    sl0 = S[S_SL0, a]
    tp1_done = S[S_TP1_DONE, a] > 0
    t[0] = S[S_SIG_BAR, a]
    t[1] = S[S_ENTRY_BAR, a]
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
    t[12] = min(S[S_WORST, a], d * (last_px - entry)) / entry
    t[13] = max(S[S_BEST, a], d * (last_px - entry)) / entry
    t[14] = (gross - fees) / (units0 * abs(entry - sl0)) if not math.isnan(sl0) and entry != sl0 else math.nan
    t[15] = 1.0 if tp1_done else 0.0
    t[16] = sl0
    t[17] = S[S_TP0, a]
    t[18] = exit_val / units0
    t[19] = S[S_TP1_PX, a] if tp1_done else math.nan
    t[20] = S[S_TP1_BAR, a] if tp1_done else -1
    t[21] = lev
    t[_C_SIG_TS] = S[S_SIG_TS, a]
    t[_C_ENTRY_TS] = S[S_ENTRY_TS, a]
    t[_C_EXIT_TS] = exit_ts
    t[_C_TP1_TS] = S[S_TP1_TS, a] if tp1_done else -1
    t[_C_SINCE_TS] = -1
    t[_C_ASSET] = a
    t[_C_GROUP] = S[S_GROUP_E, a]


@numba.njit(cache=True)
def _row_order(rows, n, a, s, s_ts, i, i_ts, d, reason, sl_, tp_, since_ts):  # pragma: no cover - compiled
    """Order row ``n`` (entry_bar -1): expired / rejected / denied / skipped / pending."""
    t = rows[n]
    t[:] = math.nan
    t[0] = s
    t[1] = -1
    t[2] = i
    t[3] = d
    t[6] = 0.0
    t[11] = reason
    t[16] = sl_
    t[17] = tp_
    t[_C_SIG_TS] = s_ts
    t[_C_ENTRY_TS] = -1
    t[_C_EXIT_TS] = i_ts
    t[_C_TP1_TS] = -1
    t[_C_SINCE_TS] = since_ts
    t[_C_ASSET] = a


@numba.njit(cache=True, inline="always")
def _fill_exit(S, cash, ac, a, q, price, fee_rate):  # pragma: no cover - compiled
    """Book an exit fill of ``q`` units at ``price``: cash, fees, gross, exit value, units."""
    d = S[S_D, a]
    f = q * price * fee_rate
    g = d * q * (price - S[S_ENTRY, a])
    cash[ac] += g - f
    S[S_FEES, a] += f
    S[S_GROSS, a] += g
    S[S_EXIT_VAL, a] += q * price
    S[S_UNITS, a] -= q


@numba.njit(cache=True, error_model="numpy")
def _engine_kernel(
    ts,
    asset,
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
    tw,
    grp,
    lot,
    sym,
    P,
    acct,
    lim,
    S,
    cash,
    Bk,
    record_skips,
    trades,
    olog,
    pos_out,
    eq_out,
    g_ts,
    g_eq,
    g_pv,
    g_gross,
    g_npos,
    g_state,
    g_scale,
    g_gopen,
    g_eopen,
):  # pragma: no cover - compiled
    """Walk rows ``0..R-1`` (sorted by ts, then asset) of the flat per-asset-bar arrays; mutate ``S`` and ``cash``.

    Returns ``(n_rows_written, n_order_log_rows, n_timestamps)``; rows ``[:n]`` of ``trades`` hold trades and order
    rows (:data:`ROW_COLUMNS`), ``olog`` the decisions of order source 2 (:data:`ORDER_LOG_COLUMNS`); per row ``pos_out`` (signed units) / ``eq_out`` (account equity at the close) and per
    timestamp ``g_*`` when their length allows (record off: length 0). ``grp``: group id per row (length 0: none);
    ``sym``: symbol id per asset; ``Bk``: the accounts' risk state (:data:`BOOK_FIELDS`), mutated.
    """
    R = ts.shape[0]
    N = S.shape[1]
    n_acc = cash.shape[0]
    record = pos_out.shape[0] == R
    grec = g_eq.shape[0] > 0
    max_pos = int(lim[L_MAXPOS])
    acc_eq = np.zeros(n_acc)
    acc_spot = np.zeros(n_acc)
    need = np.zeros(n_acc)
    acc_n = np.zeros(n_acc, np.int64)
    due = np.zeros(N, np.int64)
    dlt = np.zeros(N)
    has_w = tw.shape[0] > 0
    has_g = grp.shape[0] > 0
    risk = lim[L_DAILY] > 0 or lim[L_MAXDD] > 0 or lim[L_DD_SOFT] > 0 or lim[L_DD_HARD] > 0 or lim[L_VOL_TGT] > 0
    max_sym = int(lim[L_MAX_SYM])
    cap_a = lim[L_ASSET_W]
    cap_g = lim[L_GROUP_W]
    cap_x = lim[L_GROSS]
    caps = cap_a > 0 or cap_g > 0 or cap_x > 0
    cooldown = lim[L_COOLDOWN]
    pu = np.zeros(N)  # order source 2: projected signed units after this open's orders
    eq_proj = np.zeros(n_acc)
    dst = np.zeros(N, np.int64)
    nt = 0
    no = 0
    ng = 0
    r0 = 0
    while r0 < R:
        if not risk:
            # event skipping: while every asset is flat with nothing pending (no entry, exit or target weight due),
            # no timestamp before the next one with an input (a signal, a target weight) can fill, stop or size
            # anything, and without risk limits no account state evolves: walk those timestamps recording the
            # constant book (each row exactly what the full pass below would write), then resume the full pass at
            # the timestamp with the input
            flat = True
            for b in range(N):
                if S[S_D, b] != 0 or S[S_PE_BAR, b] >= 0 or S[S_PX_BAR, b] >= 0 or S[S_TW_BAR, b] >= 0:
                    flat = False
                    break
            if flat:
                eo = 0.0
                for k in range(n_acc):
                    eo += cash[k]
                gopen0 = 0.0 / eo if eo > 0 else math.nan
                st = 0.0
                sc = 1.0
                for k in range(n_acc):
                    st = max(st, Bk[B_STATE, k])
                    sc = min(sc, Bk[B_SCALE, k])
                while r0 < R:
                    r1 = r0 + 1
                    while r1 < R and ts[r1] == ts[r0]:
                        r1 += 1
                    ev = False
                    for r in range(r0, r1):
                        if sig[r] != 0 or (has_w and not math.isnan(tw[r])):
                            ev = True
                    if ev:
                        break
                    for r in range(r0, r1):
                        a = asset[r]
                        if has_g:
                            S[S_GROUP, a] = grp[r]
                        S[S_BARS, a] = S[S_BARS, a] + 1
                        S[S_MARK, a] = c[r]
                        S[S_LAST_TS, a] = ts[r]
                        if record:
                            pos_out[r] = S[S_D, a] * S[S_UNITS, a]
                            eq_out[r] = cash[acct[a]]
                    if grec:
                        g_ts[ng] = ts[r0]
                        g_eq[ng] = eo
                        g_pv[ng] = 0.0
                        g_gross[ng] = 0.0
                        g_npos[ng] = 0
                        g_state[ng] = st
                        g_scale[ng] = sc
                        g_gopen[ng] = gopen0
                        g_eopen[ng] = eo
                    ng += 1
                    r0 = r1
                if r0 >= R:
                    break
        r1 = r0 + 1
        while r1 < R and ts[r1] == ts[r0]:
            r1 += 1
        # 0. the assets with a bar now are marked at this open (sizing of entries at this open), their group set;
        # the accounts' risk state is evaluated on this equity, before any fill
        for r in range(r0, r1):
            S[S_MARK, asset[r]] = o[r]
            if has_g:
                S[S_GROUP, asset[r]] = grp[r]
        if risk:  # only the accounts with a bar now (a sleeve without one has not moved)
            for k in range(n_acc):
                acc_eq[k] = cash[k]
                acc_n[k] = 0
            for r in range(r0, r1):
                acc_n[acct[asset[r]]] = 1
            for b in range(N):
                if S[S_D, b] != 0:
                    acc_eq[acct[b]] += S[S_D, b] * S[S_UNITS, b] * (S[S_MARK, b] - S[S_ENTRY, b])
            for k in range(n_acc):
                if acc_n[k] > 0:
                    _risk_eval(Bk, k, ts[r0], acc_eq[k], lim)
        # 1. pending signal/reverse exits and time stops, at the open
        for r in range(r0, r1):
            a = asset[r]
            ac = acct[a]
            i = S[S_BARS, a]
            d = S[S_D, a]
            px_bar = S[S_PX_BAR, a]
            max_bars = P[a, P_MAXBARS]
            if d != 0 and ((px_bar >= 0 and i >= px_bar) or (max_bars > 0 and i - S[S_ENTRY_BAR, a] >= max_bars)):
                reason = S[S_PX_REASON, a] if (px_bar >= 0 and i >= px_bar) else _R_TIME
                price = o[r] * (1.0 - d * P[a, P_SLIP] * 1e-4)
                _fill_exit(S, cash, ac, a, S[S_UNITS, a], price, P[a, P_TAKER] * 1e-4)
                _row_trade(trades, nt, S, a, i, ts[r], S[S_EXIT_VAL, a], S[S_GROSS, a], reason, price)
                nt += 1
                S[S_D, a] = 0.0
                S[S_UNITS, a] = 0.0
            if px_bar >= 0 and i >= px_bar:
                S[S_PX_BAR, a] = -1.0
        # 1b. order source 2: target weights due at this open, on the account's equity at this open; sells first
        nd = 0
        if has_w:
            for r in range(r0, r1):
                a = asset[r]
                if S[S_TW_BAR, a] >= 0 and S[S_BARS, a] >= S[S_TW_BAR, a]:
                    due[nd] = r
                    nd += 1
        if nd > 0:
            for k in range(n_acc):
                acc_eq[k] = cash[k]
                acc_spot[k] = cash[k]
                need[k] = 0.0
                acc_n[k] = 0
            for b in range(N):
                if S[S_D, b] != 0:
                    acc_n[acct[b]] += 1
                    acc_eq[acct[b]] += S[S_D, b] * S[S_UNITS, b] * (S[S_MARK, b] - S[S_ENTRY, b])
                    acc_spot[acct[b]] -= S[S_D, b] * S[S_UNITS, b] * S[S_ENTRY, b]
            for j in range(nd):
                r = due[j]
                a = asset[r]
                ac = acct[a]
                w = S[S_TW, a]
                S[S_TW_BAR, a] = -1.0
                we = w * Bk[B_SCALE, ac]  # drawdown / volatility scaling of the target
                price = o[r]
                eq = acc_eq[ac]
                cur = S[S_D, a] * S[S_UNITS, a]
                delta = we * eq / price - cur if eq > 0 else -cur
                if lot[a] > 0 and we > 0:  # round the order down to the lot step (a full exit sells everything)
                    delta = math.copysign(math.floor(abs(delta) / lot[a] + 1e-9) * lot[a], delta)
                curw = cur * price / eq if eq > 0 else 0.0
                status = -1
                if delta == 0:
                    status = _O_UNCHANGED
                elif abs(we - curw) < lim[L_BAND_W] or abs(delta * price) < lim[L_BAND_N]:
                    status = _O_BAND
                elif abs(delta * price) < lim[L_MIN_NOTIONAL]:
                    status = _O_BELOW_MIN
                elif delta > 0 and Bk[B_HALT, ac] > 0:
                    status = _O_DENY_HALT
                elif delta > 0 and Bk[B_DAILY, ac] > 0:
                    status = _O_DENY_DAILY
                elif cur == 0 and cooldown > 0 and S[S_STOP_BAR, a] >= 0 and S[S_BARS, a] - S[S_STOP_BAR, a] < cooldown:
                    status = _O_COOLDOWN
                elif cur == 0 and max_pos > 0 and acc_n[ac] >= max_pos:
                    status = _O_DENY_MAXPOS
                elif cur == 0 and max_sym > 0 and _n_same_symbol(S, acct, sym, a) >= max_sym:
                    status = _O_DENY_SYMBOL
                elif cur == 0:
                    acc_n[ac] += 1
                if status >= 0:
                    _olog_row(olog, no, a, S[S_BARS, a], ts[r], status, w, 0.0, math.nan, 0.0)
                    no += 1
                    delta = 0.0
                dlt[j] = delta
                dst[j] = _O_FILLED
            if caps:  # cut the buys to the exposure caps, on the exposure and equity after the sells
                for k in range(n_acc):
                    eq_proj[k] = acc_eq[k]
                for b in range(N):
                    pu[b] = S[S_D, b] * S[S_UNITS, b]
                for j in range(nd):
                    if dlt[j] < 0:
                        r = due[j]
                        a = asset[r]
                        fill = o[r] * (1.0 - P[a, P_SLIP] * 1e-4)
                        pu[a] += dlt[j]
                        eq_proj[acct[a]] += dlt[j] * (fill * P[a, P_TAKER] * 1e-4 + (o[r] - fill))
                for j in range(nd):
                    if dlt[j] <= 0:
                        continue
                    r = due[j]
                    a = asset[r]
                    ac = acct[a]
                    m = o[r]
                    fill = m * (1.0 + P[a, P_SLIP] * 1e-4)
                    cu = fill * P[a, P_TAKER] * 1e-4 + (fill - m)
                    gross_o = 0.0
                    grp_o = 0.0
                    for b in range(N):
                        if b != a and acct[b] == ac and pu[b] != 0:
                            v = abs(pu[b]) * S[S_MARK, b]
                            gross_o += v
                            if S[S_GROUP, a] >= 0 and S[S_GROUP, b] == S[S_GROUP, a]:
                                grp_o += v
                    cur_n = abs(pu[a]) * m
                    q = dlt[j]
                    why = -1
                    qa = _cap_units(cap_a, eq_proj[ac], 0.0, cur_n, m, cu)
                    if qa < q:
                        q = qa
                        why = _O_DENY_ASSET
                    if S[S_GROUP, a] >= 0:
                        qg = _cap_units(cap_g, eq_proj[ac], grp_o, cur_n, m, cu)
                        if qg < q:
                            q = qg
                            why = _O_DENY_GROUP
                    qx = _cap_units(cap_x, eq_proj[ac], gross_o, cur_n, m, cu)
                    if qx < q:
                        q = qx
                        why = _O_DENY_GROSS
                    if why >= 0:
                        q = max(q, 0.0) * (1.0 - 1e-12)
                        if lot[a] > 0:
                            q = math.floor(q / lot[a] + 1e-9) * lot[a]
                        if q * m < max(lim[L_MIN_NOTIONAL], 1e-9 * eq_proj[ac]):  # nothing fits
                            _olog_row(olog, no, a, S[S_BARS, a], ts[r], why, S[S_TW, a], 0.0, math.nan, 0.0)
                            no += 1
                            if pu[a] == 0:
                                acc_n[ac] -= 1
                            q = 0.0
                        else:
                            dst[j] = _O_CAPPED
                        dlt[j] = q
                    pu[a] += q
                    eq_proj[ac] -= q * cu
            for j in range(nd):
                if dlt[j] > 0:
                    r = due[j]
                    a = asset[r]
                    need[acct[a]] += dlt[j] * o[r] * (1.0 + P[a, P_SLIP] * 1e-4) * (1.0 + P[a, P_TAKER] * 1e-4)
            for side in range(2):  # 0: sells, 1: buys
                if side == 1:  # the buys' scale per account, on the cash after the sells
                    for k in range(n_acc):
                        need[k] = max(acc_spot[k], 0.0) / need[k] * (1.0 - 1e-12) if need[k] > acc_spot[k] else 1.0
                for j in range(nd):
                    delta = dlt[j]
                    if delta == 0 or (side == 0) != (delta < 0):
                        continue
                    r = due[j]
                    a = asset[r]
                    ac = acct[a]
                    slip = P[a, P_SLIP] * 1e-4
                    fee_rate = P[a, P_TAKER] * 1e-4
                    status = dst[j]
                    if side == 0:
                        q = -delta
                        price = o[r] * (1.0 - slip)
                        fee = q * price * fee_rate
                        _fill_exit(S, cash, ac, a, q, price, fee_rate)
                        acc_spot[ac] += q * price - fee
                        if S[S_UNITS, a] <= 1e-12 * S[S_UNITS0, a]:
                            S[S_UNITS, a] = 0.0
                            _row_trade(
                                trades, nt, S, a, S[S_BARS, a], ts[r], S[S_EXIT_VAL, a], S[S_GROSS, a], _R_REBAL, price
                            )
                            nt += 1
                            S[S_D, a] = 0.0
                        signed = -q
                    else:
                        q = delta
                        price = o[r] * (1.0 + slip)
                        if need[ac] < 1.0:  # scale the buys so the account's cash stays >= 0 after fees
                            q *= need[ac]
                            if lot[a] > 0:
                                q = math.floor(q / lot[a] + 1e-9) * lot[a]
                            status = _O_SCALED
                            if q * o[r] < max(lim[L_MIN_NOTIONAL], 1e-300):
                                status = _O_BELOW_MIN
                                q = 0.0
                        fee = q * price * fee_rate
                        if q > 0:
                            if S[S_D, a] == 0:
                                S[S_D, a] = 1.0
                                S[S_UNITS, a] = q
                                S[S_UNITS0, a] = q
                                S[S_ENTRY, a] = price
                                S[S_ENTRY_BAR, a] = S[S_BARS, a]
                                S[S_ENTRY_TS, a] = ts[r]
                                S[S_SIG_BAR, a] = S[S_BARS, a] - 1
                                S[S_SIG_TS, a] = S[S_LAST_TS, a]
                                S[S_INTRA, a] = 0.0
                                for k in (S_TP1, S_LIQ, S_TRAIL, S_TP1_PX):
                                    S[k, a] = math.nan
                                at = S[S_PE_ATR, a]  # optional ATR / fixed stop and target of this position
                                S[S_ATR_E, a] = at
                                S[S_SL, a] = _level(math.nan, price, -1.0, at, P[a, P_SLATR], P[a, P_SLPCT])
                                S[S_TP, a] = _level(math.nan, price, 1.0, at, P[a, P_TPATR], P[a, P_TPPCT])
                                S[S_SL0, a] = S[S_SL, a]
                                S[S_TP0, a] = S[S_TP, a]
                                S[S_GROUP_E, a] = S[S_GROUP, a]
                                S[S_LEV, a] = 1.0
                                S[S_TP1_BAR, a] = -1.0
                                S[S_TP1_TS, a] = -1.0
                                S[S_TRAIL_ON, a] = 0.0
                                S[S_BE_ON, a] = 0.0
                                S[S_TP1_DONE, a] = 0.0
                                S[S_BEST, a] = 0.0
                                S[S_WORST, a] = 0.0
                                S[S_FEES, a] = 0.0
                                S[S_GROSS, a] = 0.0
                                S[S_EXIT_VAL, a] = 0.0
                            else:
                                u = S[S_UNITS, a]
                                S[S_ENTRY, a] = (u * S[S_ENTRY, a] + q * price) / (u + q)
                                S[S_UNITS, a] = u + q
                                S[S_UNITS0, a] += q
                            S[S_FEES, a] += fee
                            cash[ac] -= fee
                            acc_spot[ac] -= q * price + fee
                        signed = q
                    _olog_row(
                        olog,
                        no,
                        a,
                        S[S_BARS, a],
                        ts[r],
                        status,
                        S[S_TW, a],
                        signed,
                        price if signed != 0 else math.nan,
                        fee if signed != 0 else 0.0,
                    )
                    no += 1
        # 2. pending entries (a reverse entry fills on the same open as the exit)
        for r in range(r0, r1):
            a = asset[r]
            if not (S[S_D, a] == 0 and S[S_PE_BAR, a] >= 0 and S[S_BARS, a] >= S[S_PE_BAR, a]):
                continue
            ac = acct[a]
            i = S[S_BARS, a]
            taker = P[a, P_TAKER] * 1e-4
            maker = P[a, P_MAKER] * 1e-4
            slip = P[a, P_SLIP] * 1e-4
            s = S[S_PE_SIG, a]
            s_ts = S[S_PE_TS, a]
            dd = S[S_PE_DIR, a]
            lmt = S[S_PE_LIM, a]
            fill = math.nan
            fee_rate = taker
            if math.isnan(lmt):
                fill = o[r] * (1.0 + dd * slip)
                S[S_PE_BAR, a] = -1.0
            else:
                fee_rate = maker
                if dd > 0 and l[r] <= lmt:
                    fill = min(o[r], lmt)
                elif dd < 0 and h[r] >= lmt:
                    fill = max(o[r], lmt)
                if not math.isnan(fill):
                    S[S_PE_BAR, a] = -1.0
                elif i - S[S_PE_BAR, a] + 1 >= P[a, P_VALID]:
                    _row_order(trades, nt, a, s, s_ts, i, ts[r], dd, _R_EXPIRED, math.nan, math.nan, -1)
                    nt += 1
                    S[S_PE_BAR, a] = -1.0
            if math.isnan(fill):
                continue
            at = S[S_PE_ATR, a]
            sl_ = _level(S[S_PE_SL, a], fill, -dd, at, P[a, P_SLATR], P[a, P_SLPCT])
            tp_ = _level(S[S_PE_TP, a], fill, dd, at, P[a, P_TPATR], P[a, P_TPPCT])
            tp1_ = (
                _level(S[S_PE_TP1, a], fill, dd, at, P[a, P_TP1ATR], P[a, P_TP1PCT])
                if P[a, P_TP1FRAC] > 0
                else math.nan
            )
            lev_s = S[S_PE_LEV, a]
            lev_s = P[a, P_LEV] if math.isnan(lev_s) else lev_s
            liq_ = S[S_PE_LIQ, a]
            if math.isnan(liq_) and lev_s > 1.0:
                liq_ = fill * (1.0 - dd * (1.0 / lev_s - P[a, P_MMR]))
            bad_lvl = (
                ((not math.isnan(sl_)) and (sl_ - fill) * dd >= 0)
                or ((not math.isnan(tp_)) and (tp_ - fill) * dd <= 0)
                or ((not math.isnan(tp1_)) and (tp1_ - fill) * dd <= 0)
            )
            bad_liq = lev_s <= 0.0 or (
                (not math.isnan(liq_)) and (not math.isnan(sl_)) and (sl_ - liq_) * dd < P[a, P_LIQBUF] * fill
            )
            if bad_lvl or bad_liq:
                _row_order(trades, nt, a, s, s_ts, i, ts[r], dd, _R_REJ_LVL if bad_lvl else _R_REJ_LIQ, sl_, tp_, -1)
                nt += 1
                continue
            # the account's equity (open PnL of its other positions at their latest price) and margin in use
            eq = cash[ac]
            used = 0.0
            n_open = 0
            gross_o = 0.0
            grp_o = 0.0
            n_sym = 0
            for b in range(N):
                if acct[b] == ac and S[S_D, b] != 0:
                    eq += S[S_D, b] * S[S_UNITS, b] * (S[S_MARK, b] - S[S_ENTRY, b])
                    used += S[S_UNITS, b] * S[S_ENTRY, b] / S[S_LEV, b]
                    n_open += 1
                    v = S[S_UNITS, b] * S[S_MARK, b]
                    gross_o += v
                    if S[S_GROUP, a] >= 0 and S[S_GROUP, b] == S[S_GROUP, a]:
                        grp_o += v
                    if sym[b] == sym[a]:
                        n_sym += 1
            deny = -1
            if max_pos > 0 and n_open >= max_pos:
                deny = _R_DENY_MAXPOS
            elif max_sym > 0 and n_sym >= max_sym:
                deny = _R_DENY_SYMBOL
            elif Bk[B_HALT, ac] > 0:
                deny = _R_DENY_HALT
            elif Bk[B_DAILY, ac] > 0:
                deny = _R_DENY_DAILY
            if deny >= 0:
                _row_order(trades, nt, a, s, s_ts, i, ts[r], dd, deny, sl_, tp_, -1)
                nt += 1
                continue
            frac = S[S_PE_SIZE, a]
            frac = P[a, P_SIZE] if math.isnan(frac) else frac
            u = eq * frac * lev_s / (fill * (1.0 + fee_rate))
            if n_open > 0:
                u = min(u, max(min(eq, cash[ac]) - used, 0.0) * lev_s / (fill * (1.0 + fee_rate)))
            if P[a, P_RISK] > 0 and not math.isnan(sl_):
                u = min(u, eq * P[a, P_RISK] / abs(fill - sl_))
            u *= Bk[B_SCALE, ac]  # drawdown / volatility scaling
            if caps and u > 0:  # cut to the exposure caps (after this fill's own cost)
                m = o[r]
                cu = fill * fee_rate + dd * (fill - m)
                why = -1
                q = _cap_units(cap_a, eq, 0.0, 0.0, m, cu)
                if q < u:
                    u = q
                    why = _R_DENY_ASSET
                if S[S_GROUP, a] >= 0:
                    q = _cap_units(cap_g, eq, grp_o, 0.0, m, cu)
                    if q < u:
                        u = q
                        why = _R_DENY_GROUP
                q = _cap_units(cap_x, eq, gross_o, 0.0, m, cu)
                if q < u:
                    u = q
                    why = _R_DENY_GROSS
                if why >= 0:
                    u *= 1.0 - 1e-12
                    if not (u * fill >= max(lim[L_MIN_NOTIONAL], 1e-9 * eq)):  # nothing fits
                        _row_order(trades, nt, a, s, s_ts, i, ts[r], dd, why, sl_, tp_, -1)
                        nt += 1
                        continue
            if not u > 0:
                if n_open > 0:  # the other positions hold all the margin: denied (alone, as simulate: no row)
                    _row_order(trades, nt, a, s, s_ts, i, ts[r], dd, _R_DENY_MARGIN, sl_, tp_, -1)
                    nt += 1
            else:
                S[S_D, a] = dd
                S[S_UNITS, a] = u
                S[S_UNITS0, a] = u
                S[S_ENTRY, a] = fill
                S[S_ENTRY_BAR, a] = i
                S[S_ENTRY_TS, a] = ts[r]
                S[S_SIG_BAR, a] = s
                S[S_SIG_TS, a] = s_ts
                S[S_INTRA, a] = 1.0 if (fill != o[r] and not math.isnan(lmt)) else 0.0
                S[S_SL, a] = sl_
                S[S_TP, a] = tp_
                S[S_TP1, a] = tp1_
                S[S_SL0, a] = sl_
                S[S_TP0, a] = tp_
                S[S_LIQ, a] = liq_
                S[S_LEV, a] = lev_s
                S[S_LAST_PX, a] = math.nan
                S[S_TP1_PX, a] = math.nan
                S[S_TP1_BAR, a] = -1.0
                S[S_TP1_TS, a] = -1.0
                S[S_TRAIL, a] = math.nan
                S[S_TRAIL_ON, a] = 0.0
                S[S_BE_ON, a] = 0.0
                S[S_TP1_DONE, a] = 0.0
                S[S_BEST, a] = 0.0
                S[S_WORST, a] = 0.0
                S[S_ATR_E, a] = at
                S[S_GROUP_E, a] = S[S_GROUP, a]
                S[S_FEES, a] = u * fill * fee_rate
                S[S_GROSS, a] = 0.0
                S[S_EXIT_VAL, a] = 0.0
                cash[ac] -= S[S_FEES, a]
        if grec:  # the book right after this open's fills: gross exposure at the open's marks
            eo = 0.0
            go = 0.0
            for k in range(n_acc):
                eo += cash[k]
            for b in range(N):
                if S[S_D, b] != 0:
                    eo += S[S_D, b] * S[S_UNITS, b] * (S[S_MARK, b] - S[S_ENTRY, b])
                    go += S[S_UNITS, b] * S[S_MARK, b]
            g_gopen[ng] = go / eo if eo > 0 else math.nan
            g_eopen[ng] = eo
        # 3-5 per asset: stops and targets inside the bar, the completed bar, the decisions on its close
        for r in range(r0, r1):
            a = asset[r]
            ac = acct[a]
            i = S[S_BARS, a]
            taker = P[a, P_TAKER] * 1e-4
            maker = P[a, P_MAKER] * 1e-4
            slip = P[a, P_SLIP] * 1e-4
            d = S[S_D, a]
            entry = S[S_ENTRY, a]
            if (
                d != 0
                and (i > S[S_ENTRY_BAR, a] or P[a, P_ENTRYBAR] > 0)
                and not (  # a position without any level (no stop, target, break-even, trail or liquidation)
                    math.isnan(S[S_SL, a])
                    and math.isnan(S[S_TP, a])
                    and math.isnan(S[S_LIQ, a])
                    and S[S_BE_ON, a] == 0
                    and S[S_TRAIL_ON, a] == 0
                    and (S[S_TP1_DONE, a] > 0 or math.isnan(S[S_TP1, a]))
                )
            ):
                stop = S[S_SL, a]
                reason = _R_SL
                if S[S_BE_ON, a] > 0 and (math.isnan(stop) or (entry - stop) * d > 0):
                    stop = entry
                    reason = _R_BE
                trail = S[S_TRAIL, a]
                if S[S_TRAIL_ON, a] > 0 and (math.isnan(stop) or (trail - stop) * d > 0):
                    stop = trail
                    reason = _R_TRAIL
                liq = S[S_LIQ, a]
                if math.isnan(stop) and not math.isnan(liq):
                    stop = liq
                    reason = _R_LIQ
                fav = h[r] if d > 0 else l[r]
                adv = l[r] if d > 0 else h[r]
                done = False
                last_px = math.nan
                if not math.isnan(stop) and (o[r] - stop) * d <= 0:  # opened through the stop
                    price = o[r] * (1.0 - d * slip)
                    _fill_exit(S, cash, ac, a, S[S_UNITS, a], price, taker)
                    last_px = price
                    done = True
                else:
                    tp1 = S[S_TP1, a]
                    tp = S[S_TP, a]
                    tp1_done = S[S_TP1_DONE, a] > 0
                    stop_hit = (not math.isnan(stop)) and (adv - stop) * d <= 0
                    tp1_hit = (not tp1_done) and (not math.isnan(tp1)) and (fav - tp1) * d >= 0
                    tp_hit = (not math.isnan(tp)) and (fav - tp) * d >= 0
                    if i == S[S_ENTRY_BAR, a] and S[S_INTRA, a] > 0:  # the bar's extreme may predate a limit fill
                        tp1_hit = False
                        tp_hit = False
                    target_first = False
                    if stop_hit and (tp1_hit or tp_hit):
                        first = tp1 if tp1_hit else tp
                        if (o[r] - first) * d >= 0:
                            target_first = True  # opened through the target
                        elif fine_end.shape[0] > 0 and fine_end[r] > fine_start[r]:
                            target_first = _first_event(fine_start[r], fine_end[r], fh, fl, d, stop, first) == 1
                        if not target_first:
                            tp1_hit = False
                            tp_hit = False
                    if tp1_hit:
                        price = tp1 if (o[r] - tp1) * d < 0 else o[r]
                        q = min(S[S_UNITS0, a] * P[a, P_TP1FRAC], S[S_UNITS, a])
                        _fill_exit(S, cash, ac, a, q, price, maker)
                        S[S_TP1_DONE, a] = 1.0
                        S[S_TP1_PX, a] = price
                        S[S_TP1_BAR, a] = i
                        S[S_TP1_TS, a] = ts[r]
                        last_px = price
                        S[S_LAST_PX, a] = price
                        if S[S_UNITS, a] <= 1e-12 * S[S_UNITS0, a]:
                            S[S_UNITS, a] = 0.0
                            reason = _R_TP
                            done = True
                    if not done and tp_hit:
                        price = tp if (o[r] - tp) * d < 0 else o[r]
                        _fill_exit(S, cash, ac, a, S[S_UNITS, a], price, maker)
                        last_px = price
                        reason = _R_TP
                        done = True
                    if not done and stop_hit:
                        price = stop * (1.0 - d * slip)
                        _fill_exit(S, cash, ac, a, S[S_UNITS, a], price, taker)
                        last_px = price
                        done = True
                if done:
                    if reason != _R_TP:
                        S[S_STOP_BAR, a] = i
                    S[S_UNITS, a] = 0.0
                    S[S_LAST_PX, a] = last_px
                    _row_trade(trades, nt, S, a, i, ts[r], S[S_EXIT_VAL, a], S[S_GROSS, a], reason, last_px)
                    nt += 1
                    S[S_D, a] = 0.0
                    S[S_PX_BAR, a] = -1.0
            # 4. the bar completed with the position open: excursions, and the stops of the next bar
            d = S[S_D, a]
            if d != 0:
                best = max(S[S_BEST, a], d * ((h[r] if d > 0 else l[r]) - entry))
                S[S_BEST, a] = best
                S[S_WORST, a] = min(S[S_WORST, a], d * ((l[r] if d > 0 else h[r]) - entry))
                if S[S_TP1_DONE, a] > 0 and P[a, P_BE] > 0:
                    S[S_BE_ON, a] = 1.0
                atr_e = S[S_ATR_E, a]
                if not math.isnan(P[a, P_TRAIL]) and not math.isnan(atr_e):
                    if (
                        S[S_TRAIL_ON, a] == 0
                        and best >= P[a, P_TRAILACT] * atr_e
                        and (P[a, P_TRAILTP1] == 0 or S[S_TP1_DONE, a] > 0)
                    ):
                        S[S_TRAIL_ON, a] = 1.0
                    if S[S_TRAIL_ON, a] > 0:
                        cand = entry + d * best - d * P[a, P_TRAIL] * atr_e
                        trail = S[S_TRAIL, a]
                        if math.isnan(trail) or (cand - trail) * d > 0:
                            S[S_TRAIL, a] = cand
            # 5. decisions on this bar's close
            sg = sig[r]
            lat = P[a, P_LAT]
            if sg != 0:
                if d == 0 and S[S_PE_BAR, a] < 0:
                    take = True
                elif d != 0 and sg != d and S[S_PX_BAR, a] < 0 and P[a, P_REVERSE] > 0:
                    S[S_PX_BAR, a] = i + 1 + lat
                    S[S_PX_REASON, a] = _R_REVERSE
                    take = True
                else:
                    take = False
                    if record_skips:  # ignored: a position is open or an entry order is waiting
                        if d != 0:
                            _row_order(
                                trades, nt, a, i, ts[r], i, ts[r], sg, _R_SKIP_POS, math.nan, math.nan, S[S_ENTRY_TS, a]
                            )
                        else:
                            _row_order(
                                trades, nt, a, i, ts[r], i, ts[r], sg, _R_SKIP_ORD, math.nan, math.nan, S[S_PE_TS, a]
                            )
                        nt += 1
                if take:
                    S[S_PE_BAR, a] = i + 1 + lat
                    S[S_PE_DIR, a] = sg
                    S[S_PE_SIG, a] = i
                    S[S_PE_TS, a] = ts[r]
                    S[S_PE_LIM, a] = _at(s_limit, r)
                    S[S_PE_SL, a] = _at(s_sl, r)
                    S[S_PE_TP1, a] = _at(s_tp1, r)
                    S[S_PE_TP, a] = _at(s_tp, r)
                    S[S_PE_SIZE, a] = _at(s_size, r)
                    S[S_PE_LEV, a] = _at(s_lev, r)
                    S[S_PE_LIQ, a] = _at(s_liq, r)
                    S[S_PE_ATR, a] = _at(atr, r)
            elif exit_sig.shape[0] > 0 and exit_sig[r] and d != 0 and S[S_PX_BAR, a] < 0:
                S[S_PX_BAR, a] = i + 1 + lat
                S[S_PX_REASON, a] = _R_SIGNAL
            if has_w and not math.isnan(tw[r]):  # order source 2: a new target replaces a pending one
                S[S_TW, a] = tw[r]
                S[S_TW_BAR, a] = i + 1 + lat
                S[S_PE_ATR, a] = _at(atr, r)
            S[S_BARS, a] = i + 1
            S[S_MARK, a] = c[r]
            S[S_LAST_TS, a] = ts[r]
        # records at the close: account equity per row, the book per timestamp
        if record or grec:
            for k in range(n_acc):
                acc_eq[k] = cash[k]
            pv = 0.0
            gross = 0.0
            npos = 0
            for b in range(N):
                if S[S_D, b] != 0:
                    acc_eq[acct[b]] += S[S_D, b] * S[S_UNITS, b] * (S[S_MARK, b] - S[S_ENTRY, b])
                    v = S[S_D, b] * S[S_UNITS, b] * S[S_MARK, b]
                    pv += v
                    gross += abs(v)
                    npos += 1
            if record:
                for r in range(r0, r1):
                    a = asset[r]
                    pos_out[r] = S[S_D, a] * S[S_UNITS, a]
                    eq_out[r] = acc_eq[acct[a]]
            if grec:
                tot = 0.0
                for k in range(n_acc):
                    tot += acc_eq[k]
                g_ts[ng] = ts[r0]
                g_eq[ng] = tot
                g_pv[ng] = pv
                g_gross[ng] = gross
                g_npos[ng] = npos
                st = 0.0
                sc = 1.0
                for k in range(n_acc):
                    st = max(st, Bk[B_STATE, k])
                    sc = min(sc, Bk[B_SCALE, k])
                g_state[ng] = st
                g_scale[ng] = sc
        ng += 1
        r0 = r1
    return nt, no, ng


@numba.njit(cache=True)
def _snapshot_rows(S, trades, nt, record_skips):  # pragma: no cover - compiled
    """End-of-data rows (not state): each open position marked at its last close (no exit fee), and with
    ``record_skips`` each entry order still waiting (``pending``)."""
    N = S.shape[1]
    for a in range(N):
        d = S[S_D, a]
        if d != 0:
            m = S[S_MARK, a]
            u = S[S_UNITS, a]
            _row_trade(
                trades,
                nt,
                S,
                a,
                S[S_BARS, a] - 1,
                S[S_LAST_TS, a],
                S[S_EXIT_VAL, a] + u * m,
                S[S_GROSS, a] + d * u * (m - S[S_ENTRY, a]),
                _R_OPEN,
                m,
            )
            nt += 1
    if record_skips:
        for a in range(N):
            if S[S_PE_BAR, a] >= 0:
                _row_order(
                    trades,
                    nt,
                    a,
                    S[S_PE_SIG, a],
                    S[S_PE_TS, a],
                    S[S_BARS, a] - 1,
                    S[S_LAST_TS, a],
                    S[S_PE_DIR, a],
                    _R_PENDING,
                    math.nan,
                    math.nan,
                    -1,
                )
                nt += 1
    return nt


@dataclass
class AssetInput:
    """One asset's bars and order source 1 (signals with brackets), see :func:`pipeline.core.simulator.simulate`.

    ``bars``: sorted candles ``ts`` (epoch ms UTC), ``open, high, low, close`` (quote) and optionally ``atr``.
    ``signal``: int (n,) +1/-1 on the decision bar's close; ``exit_signal`` bool (n,); per-signal float arrays (n,)
    (NaN = ``params``); ``fine`` finer candles (``ts, high, low``) with ``step_ms`` the bar length.

    Order source 2: ``weight`` float (n,) target weight (fraction of the account's equity, >= 0: long only) decided
    on the bar's close and rebalanced at the next open (after latency); NaN = no decision, holdings drift.
    ``lot_step`` (base units, 0 = none): orders round down to it. An asset uses one source: a ``weight`` array
    and non-zero ``signal`` together raise ``ValueError``. With ``params.sl_atr``/``sl_pct`` (``tp_atr``/``tp_pct``,
    ``trail_atr``) a position of order source 2 gets a stop (target, ATR trail) at its first buy, from the ATR of
    the decision bar, exactly as a signal's bracket; a stopped-out asset is bought again at its next due target
    (after ``Limits.reentry_cooldown_bars``).

    Portfolio limits (:class:`Limits`): ``group`` int (n,) the asset's group id (e.g. its correlation cluster) at
    each bar, -1 = none; ``symbol`` the instrument it trades (default: its name), for ``max_per_symbol`` when
    several assets (strategies, timeframes) trade one symbol.
    """

    bars: pd.DataFrame
    signal: np.ndarray
    exit_signal: np.ndarray | None = None
    limit_price: np.ndarray | None = None
    sl_price: np.ndarray | None = None
    tp1_price: np.ndarray | None = None
    tp_price: np.ndarray | None = None
    size_fraction: np.ndarray | None = None
    leverage: np.ndarray | None = None
    liq_price: np.ndarray | None = None
    fine: pd.DataFrame | None = None
    step_ms: int | None = None
    weight: np.ndarray | None = None
    lot_step: float = 0.0
    group: np.ndarray | None = None
    symbol: str | None = None


_PER_SIGNAL = ("limit_price", "sl_price", "tp1_price", "tp_price", "size_fraction", "leverage", "liq_price")
_REASONS = np.asarray(EXIT_REASONS, dtype=object)


@dataclass
class EngineResult:
    """Output of :func:`run`.

    ``rows``: float64 (k, len(ROW_COLUMNS)) raw kernel rows (trades and order rows, end-of-data snapshot rows
    included; see :func:`split_rows`). ``asset_bars``: per asset-bar in time order ``asset`` (index), ``ts``,
    ``position`` (signed units), ``close``, ``equity`` (the asset's account). ``book``: per timestamp ``ts``,
    ``equity``, ``cash`` (spot-equivalent: equity − position value), ``position_value`` (signed),
    ``gross_exposure`` (Σ|position value| / equity), ``n_positions``, ``equity_open`` and
    ``gross_exposure_open`` (right after the open's fills, at the open's marks), ``engine_state`` (:data:`ENGINE_STATES`, the worst account's) and
    ``exposure_scale`` (the lowest account's drawdown x volatility multiplier). ``state``: the state after the
    last bar.
    """

    rows: np.ndarray
    asset_bars: dict[str, np.ndarray]
    book_arrays: dict[str, np.ndarray]
    state: EngineState
    names: list[str]
    olog: np.ndarray = field(default_factory=lambda: np.zeros((0, len(ORDER_LOG_COLUMNS))))
    _book: pd.DataFrame | None = None

    @property
    def book(self) -> pd.DataFrame:
        """Per timestamp (built on first access)."""
        if self._book is None:
            g = self.book_arrays
            with np.errstate(invalid="ignore", divide="ignore"):
                ge = np.where(g["equity"] > 0, g["gross"] / g["equity"], np.nan)
            self._book = pd.DataFrame(
                {
                    "ts": g["ts"],
                    "equity": g["equity"],
                    "cash": g["equity"] - g["pv"],
                    "position_value": g["pv"],
                    "gross_exposure": ge,
                    "n_positions": g["npos"],
                    "equity_open": g["eopen"],
                    "gross_exposure_open": g["gopen"],
                    "engine_state": np.asarray(ENGINE_STATES, dtype=object)[g["state"].astype(np.int64)],
                    "exposure_scale": g["scale"],
                }
            )
        return self._book

    def order_log(self) -> pd.DataFrame:
        """Order source 2, one row per decision that came due: ``asset`` (name), ``bar`` (the asset's bar index),
        ``ts``, ``status`` (:data:`ORDER_STATUSES`), ``target_weight``, ``units`` (signed fill, 0 when not sent),
        ``price`` (fill, slippage included), ``fee`` (quote)."""
        d = {k: self.olog[:, j] for j, k in enumerate(ORDER_LOG_COLUMNS)}
        nm = np.asarray(self.names, dtype=object)
        d["asset"] = nm[d["asset"].astype(np.int64)] if len(nm) else d["asset"]
        d["bar"] = d["bar"].astype(np.int64)
        d["ts"] = d["ts"].astype(np.int64)
        d["status"] = np.asarray(ORDER_STATUSES, dtype=object)[d["status"].astype(np.int64)]
        return pd.DataFrame(d)

    def trades(self) -> pd.DataFrame:
        """Filled trades: :data:`TRADE_COLUMNS` (+ ``*_ts``, ``bars_held``, ``exit_reason``, ``asset`` name)."""
        return _frames(self.rows, self.names)[0]

    def orders(self) -> pd.DataFrame:
        """Signals that never became a position: ``asset, signal_bar, signal_ts, ts, direction, status, ...``."""
        return _frames(self.rows, self.names)[1]


def _frames(rows: np.ndarray, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    cols = {k: rows[:, j] for j, k in enumerate(ROW_COLUMNS)}
    filled = cols["entry_bar"] >= 0
    for k in ("signal_bar", "entry_bar", "exit_bar", "direction", "tp1_bar", "signal_ts", "entry_ts", "exit_ts"):
        cols[k] = np.nan_to_num(cols[k], nan=-1.0).astype(np.int64)
    cols["tp1_ts"] = np.nan_to_num(cols["tp1_ts"], nan=-1.0).astype(np.int64)
    since = np.nan_to_num(cols.pop("since_ts"), nan=-1.0).astype(np.int64)
    a = cols.pop("asset").astype(np.int64)
    grp = np.nan_to_num(cols.pop("group"), nan=-1.0).astype(np.int64)
    cols["tp1_hit"] = cols["tp1_hit"] == 1.0
    cols["exit_reason"] = _REASONS[cols.pop("reason").astype(np.int64)]
    cols["bars_held"] = cols["exit_bar"] - cols["entry_bar"]
    order = [*TRADE_COLUMNS]
    order.remove("reason")
    order += ["tp1_ts", "exit_reason", "signal_ts", "entry_ts", "exit_ts", "bars_held"]
    nm = np.asarray(names, dtype=object) if names else np.zeros(0, dtype=object)
    trades = pd.DataFrame({k: cols[k][filled] for k in order})
    trades["asset"] = nm[a[filled]] if len(nm) else []
    trades["group"] = grp[filled]
    orders = pd.DataFrame(
        {
            "signal_bar": cols["signal_bar"][~filled],
            "signal_ts": cols["signal_ts"][~filled],
            "ts": cols["exit_ts"][~filled],
            "direction": cols["direction"][~filled],
            "status": cols["exit_reason"][~filled],
            "sl_initial": cols["sl_initial"][~filled],
            "tp_initial": cols["tp_initial"][~filled],
            "since_ts": since[~filled],
        }
    )
    orders["asset"] = nm[a[~filled]] if len(nm) else []
    return trades, orders


SNAPSHOT_REASONS = (_R_OPEN, _R_PENDING)


def split_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(history, snapshot)``: the rows of events that happened, and the end-of-data view (``open`` / ``pending``)."""
    snap = np.isin(rows[:, 11], SNAPSHOT_REASONS)
    return rows[~snap], rows[snap]


def run(
    assets: dict[str, AssetInput],
    params: SimParams | list[SimParams],
    *,
    init_cash=None,
    account=None,
    limits: Limits | None = None,
    state: EngineState | None = None,
    record_bars: bool = True,
    record_skipped: bool = False,
    record_orders: bool = True,
) -> EngineResult:
    """Run (or, with ``state``, resume) the engine over N assets' bars in time order.

    Args:
        assets: name → :class:`AssetInput`; the order fixes the asset index (and who is served first at one open).
        params: one :class:`SimParams` for all assets or one per asset (their ``init_cash`` is ignored here).
        init_cash: quote currency per account (scalar or (n_accounts,)); default: the first params' ``init_cash``
            (shared) or each asset's own (``account="sleeves"``).
        account: ``None`` (one shared account), ``"sleeves"`` (one account per asset) or int (N,) account ids.
        limits: :class:`Limits` (default none).
        state: the state returned by an earlier run over the same assets; every bar must be later than the
            asset's last bar run.
        record_bars: per asset-bar and per-timestamp outputs (off for sweeps).
        record_skipped: order rows for ignored signals and waiting orders (see ``simulate``).
        record_orders: the order log of order source 2 (:meth:`EngineResult.order_log`, one row per due target:
            ~64 bytes an asset-bar when weights change every bar); off, ``olog`` has 0 rows and nothing else changes.

    Raises:
        ValueError: wrong lengths, unsorted or NaN bars, a resume over bars not after the state, mismatched assets.
    """
    names = list(assets)
    n = len(names)
    plist, state = _start(names, params, init_cash, account, state)
    parts = []
    fine_h, fine_l, fine_off = [], [], 0
    # inputs nobody gave are left out (the kernel reads a length-0 array as absent); the others are filled per asset
    xs = [assets[k] for k in names]
    used = {
        "atr": any("atr" in x.bars for x in xs),
        "ex": any(x.exit_signal is not None for x in xs),
        "tw": any(x.weight is not None for x in xs) or _weights_pending(state),
        "grp": any(x.group is not None for x in xs),
        "fine": any(x.fine is not None and len(x.fine) for x in xs),
        **{k: any(getattr(x, k) is not None for x in xs) for k in _PER_SIGNAL},
    }
    for j, nm in enumerate(names):
        x = xs[j]
        b = x.bars
        m = len(b)
        ts = b["ts"].to_numpy(np.int64)
        o, h, l, c = (b[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
        bad, code = _first_invalid(ts, o, h, l, c)
        if code == 1:
            raise ValueError(f"simulate: bars must be sorted by ts without duplicates (row {bad})")
        if code == 2:
            raise ValueError(f"simulate: NaN in open/high/low/close (row {bad})")
        if m and ts[0] <= state.assets[S_LAST_TS, j]:
            raise ValueError(f"run: {nm}'s bars start at or before the state's last bar")
        sig = np.asarray(x.signal, dtype=np.int8)
        if sig.shape != (m,):
            raise ValueError(f"simulate: signal has shape {sig.shape}, expected ({m},)")
        part = {"ts": ts, "asset": np.full(m, j, np.int64), "o": o, "h": h, "l": l, "c": c, "sig": sig}
        if used["atr"]:
            part["atr"] = b["atr"].to_numpy(np.float64) if "atr" in b else np.full(m, math.nan)
        if used["ex"]:
            part["ex"] = np.zeros(m, np.bool_) if x.exit_signal is None else np.asarray(x.exit_signal, dtype=np.bool_)
        if x.weight is not None:
            w = np.asarray(x.weight, dtype=np.float64)
            if w.shape != (m,):
                raise ValueError(f"run: {nm}'s weight has shape {w.shape}, expected ({m},)")
            if (w < 0).any():
                raise ValueError(f"run: {nm}'s target weights must be >= 0 (long only)")
            if np.count_nonzero(sig):
                raise ValueError(f"run: {nm} has both signals and target weights; an asset uses one order source")
            part["tw"] = w
        elif used["tw"]:
            part["tw"] = np.full(m, math.nan)
        if x.group is not None:
            g = np.asarray(x.group, dtype=np.int64)
            if g.shape != (m,):
                raise ValueError(f"run: {nm}'s group has shape {g.shape}, expected ({m},)")
            part["grp"] = g
        elif used["grp"]:
            part["grp"] = np.full(m, -1, np.int64)
        for k in _PER_SIGNAL:
            v = getattr(x, k)
            if v is not None:
                a = np.asarray(v, dtype=np.float64)
                if a.shape != (m,):
                    raise ValueError(f"simulate: per-signal array has shape {a.shape}, expected ({m},)")
                part[k] = a
            elif used[k]:
                part[k] = np.full(m, math.nan)
        if x.fine is not None and len(x.fine):
            if x.step_ms is None:
                raise ValueError("simulate: step_ms is required with fine candles")
            fs, fe = fine_index(ts, x.step_ms, x.fine["ts"].to_numpy(np.int64))
            part["fs"], part["fe"] = fs + fine_off, fe + fine_off
            fine_h.append(x.fine["high"].to_numpy(np.float64))
            fine_l.append(x.fine["low"].to_numpy(np.float64))
            fine_off += len(x.fine)
        elif used["fine"]:
            part["fs"] = part["fe"] = np.zeros(m, np.int64)
        parts.append(part)
    if not parts or sum(len(p["ts"]) for p in parts) == 0:
        return _empty_result(state, names)
    t0 = parts[0]["ts"]
    if n > 1 and all(len(p["ts"]) == len(t0) and np.array_equal(p["ts"], t0) for p in parts[1:]):
        # every asset has a bar at every time (a (T, N) panel): interleave, no sort needed
        f = {k: np.stack([p[k] for p in parts], axis=1).ravel() for k in parts[0]}
    elif n > 1:
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.lexsort((cat["asset"], cat["ts"]))
        f = {k: np.ascontiguousarray(v[order]) for k, v in cat.items()}
    else:
        f = parts[0]
    lot = np.array([float(assets[k].lot_step) for k in names])
    sym = _symbol_ids([assets[k].symbol or k for k in names])
    fh = np.concatenate(fine_h) if fine_h else np.zeros(0)
    fl = np.concatenate(fine_l) if fine_l else np.zeros(0)
    return _execute(f, names, plist, lot, sym, fh, fl, state, limits, record_bars, record_skipped, record_orders)


def _symbol_ids(symbols: list[str]) -> np.ndarray:
    ids = {v: i for i, v in enumerate(dict.fromkeys(symbols))}
    return np.array([ids[v] for v in symbols], np.int64)


def _weights_pending(state: EngineState) -> bool:
    """Whether some asset of ``state`` has a target weight decided but not yet executed (due at its next open): the
    kernel's rebalance pass must then run even when the call brings no weights, or a resume would drop it."""
    return bool(state.assets.shape[1] and (state.assets[S_TW_BAR] >= 0).any())


def _start(names, params, init_cash, account, state):
    """Per-asset params and the state to run from (a copy of ``state``, or a new one)."""
    n = len(names)
    plist = list(params) if isinstance(params, list | tuple) else [params] * n
    if len(plist) != n:
        raise ValueError(f"run: {len(plist)} params for {n} assets")
    if state is None:
        if isinstance(account, str) and account == "sleeves":
            acct = np.arange(n, dtype=np.int64)
            cash0 = [p.init_cash for p in plist] if init_cash is None else init_cash
        else:
            acct = None if account is None else np.asarray(account, np.int64)
            cash0 = (plist[0].init_cash if plist else 0.0) if init_cash is None else init_cash
        state = EngineState.new(names, cash0, acct)
    else:
        if state.names != names:
            raise ValueError("run: the state was built for other assets")
        state = state.copy()
    return plist, state


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous view of ``a`` (a copy only when ``a`` is not C-contiguous): every kernel input has
    one array type whatever the caller's array (a read-only pandas view, a writable panel column), with no copy."""
    v = (a if a.flags.c_contiguous else np.ascontiguousarray(a)).view()
    v.flags.writeable = False
    return v


def _execute(
    f, names, plist, lot, sym, fh, fl, state, limits, record_bars, record_skipped, record_orders=True, n_ts=None
) -> EngineResult:
    """Run the kernel over the flat rows ``f`` (sorted by ts, then asset; absent inputs left out); ``n_ts``: the
    number of distinct times when the caller knows it."""
    n = len(names)
    # one array type per input (read-only, C-contiguous), so numba compiles the kernel once, not once per caller's
    # layout (a read-only pandas view, a strided panel column: each a new signature of ~30 s), without copying
    f = {k: _ro(v) for k, v in f.items()}
    fh, fl, lot, sym = _ro(fh), _ro(fl), _ro(lot), _ro(sym)
    R = len(f["ts"])
    P = np.stack([p.as_array() for p in plist])
    nnz = int(np.count_nonzero(f["sig"]))
    n_w = R - int(np.count_nonzero(np.isnan(f["tw"]))) if "tw" in f else 0
    trades = np.empty((nnz + 4 * n + 1 + n_w, _NR))
    olog = np.empty((n_w + n + 1 if record_orders else 0, len(ORDER_LOG_COLUMNS)))
    m_rows = R if record_bars else 0
    pos, eq = np.empty(m_rows), np.empty(m_rows)
    if not record_bars:
        n_ts = 0
    elif n_ts is not None:
        pass
    elif n == 1:  # one asset: its ts are strictly increasing (checked), one timestamp per row
        n_ts = R
    else:
        n_ts = int(np.count_nonzero(np.diff(f["ts"]))) + 1
    g_ts, g_eq, g_pv, g_gross = np.empty(n_ts, np.int64), np.empty(n_ts), np.empty(n_ts), np.empty(n_ts)
    g_npos = np.empty(n_ts, np.int64)
    g_state, g_scale, g_gopen, g_eopen = np.empty(n_ts), np.empty(n_ts), np.empty(n_ts), np.empty(n_ts)
    e0, eb, ei = _ro(np.empty(0)), _ro(np.empty(0, np.bool_)), _ro(np.empty(0, np.int64))
    nt, no, _ = _engine_kernel(
        f["ts"],
        f["asset"],
        f["o"],
        f["h"],
        f["l"],
        f["c"],
        f.get("atr", e0),
        f["sig"],
        f.get("ex", eb),
        *(f.get(k, e0) for k in _PER_SIGNAL),
        f.get("fs", ei),
        f.get("fe", ei),
        fh,
        fl,
        f.get("tw", e0),
        f.get("grp", ei),
        lot,
        sym,
        _ro(P),
        _ro(state.account),
        _ro((limits or Limits()).as_array()),
        state.assets,
        state.cash,
        state.book,
        record_skipped,
        trades,
        olog,
        pos,
        eq,
        g_ts,
        g_eq,
        g_pv,
        g_gross,
        g_npos,
        g_state,
        g_scale,
        g_gopen,
        g_eopen,
    )
    nt = _snapshot_rows(state.assets, trades, nt, record_skipped)
    asset_bars = {"asset": f["asset"], "ts": f["ts"], "close": f["c"], "position": pos, "equity": eq}
    book = {
        "ts": g_ts,
        "equity": g_eq,
        "pv": g_pv,
        "gross": g_gross,
        "npos": g_npos,
        "state": g_state,
        "scale": g_scale,
        "gopen": g_gopen,
        "eopen": g_eopen,
    }
    return EngineResult(_trim(trades, nt), asset_bars, book, state, names, _trim(olog, no if record_orders else 0))


def _trim(buf: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of an output buffer: a view when they fill at least half of it (copying tens of MB of
    order log costs more than the kernel that wrote it), else a copy that frees the oversized buffer."""
    return buf[:n] if 2 * n >= buf.shape[0] else buf[:n].copy()


def run_panel(
    ts: np.ndarray,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    params: SimParams | list[SimParams],
    *,
    names: list[str],
    atr: np.ndarray | None = None,
    signal: np.ndarray | None = None,
    exit_signal: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    group: np.ndarray | None = None,
    per_signal: dict[str, np.ndarray] | None = None,
    lot_step=None,
    symbols: list[str] | None = None,
    init_cash=None,
    account=None,
    limits: Limits | None = None,
    state: EngineState | None = None,
    record_bars: bool = True,
    record_skipped: bool = False,
    record_orders: bool = True,
) -> EngineResult:
    """:func:`run` on a ``(T, N)`` panel, without building per-asset frames (the fast path for many assets and for
    paper trading's one-bar steps); same kernel, same results as :func:`run` on the same bars.

    Args:
        ts: int64 ``(T,)`` bar open times, epoch ms UTC, strictly increasing.
        open, high, low, close: float64 ``(T, N)`` quote currency; a NaN close means the asset has no bar then (its
            other inputs at that row are ignored); a bar with a close must have open, high and low.
        names: the N asset names (column order). ``atr``: float ``(T, N)``. ``signal``: int ``(T, N)`` +1/-1.
        exit_signal: bool ``(T, N)``. ``weight``: float ``(T, N)`` target weights (NaN = no decision).
        group: int ``(T, N)`` group ids (-1 none). ``per_signal``: name in ``limit_price, sl_price, tp1_price,
            tp_price, size_fraction, leverage, liq_price`` → float ``(T, N)``. ``lot_step``: scalar or ``(N,)``.
        symbols: per asset (default: names). The other arguments are :func:`run`'s.

    Raises:
        ValueError: shapes that do not match ``(T, N)``, ``ts`` not increasing, a missing open/high/low on a bar
            with a close, negative weights, signals and weights on one asset, bars not after the state.
    """
    ts = np.asarray(ts, np.int64)
    T, n = len(ts), len(names)
    if T > 1 and not (np.diff(ts) > 0).all():
        raise ValueError("run_panel: ts must be strictly increasing")

    def mat(x, dtype, what):
        a = np.asarray(x, dtype=dtype)
        if a.shape != (T, n):
            raise ValueError(f"run_panel: {what} has shape {a.shape}, expected ({T}, {n})")
        return a

    c = mat(close, np.float64, "close")
    present = ~np.isnan(c)
    full = bool(present.all())
    o, h, l_ = (mat(x, np.float64, k) for x, k in ((open, "open"), (high, "high"), (low, "low")))
    if (
        (np.isnan(o).any() or np.isnan(h).any() or np.isnan(l_).any())
        if full
        else (np.isnan(o) | np.isnan(h) | np.isnan(l_))[present].any()
    ):
        raise ValueError("run_panel: NaN in open/high/low on a bar with a close")
    plist, state = _start(names, params, init_cash, account, state)
    if T == 0 or not present.any():
        return _empty_result(state, names)
    first = np.where(present.any(axis=0), ts[np.argmax(present, axis=0)], np.iinfo(np.int64).max)
    if (first <= state.assets[S_LAST_TS]).any():
        raise ValueError("run_panel: an asset's bars start at or before the state's last bar")

    def flat(a):
        v = a.ravel()
        return v if full else v[present.ravel()]

    f = {
        "ts": flat(np.repeat(ts[:, None], n, axis=1)),
        "asset": flat(np.broadcast_to(np.arange(n, dtype=np.int64), (T, n))),
        "o": flat(o),
        "h": flat(h),
        "l": flat(l_),
        "c": flat(c),
    }
    sig = np.zeros((T, n), np.int8) if signal is None else mat(signal, np.int8, "signal")
    f["sig"] = flat(sig)
    if atr is not None:
        f["atr"] = flat(mat(atr, np.float64, "atr"))
    if exit_signal is not None:
        f["ex"] = flat(mat(exit_signal, np.bool_, "exit_signal"))
    if weight is not None:
        w = mat(weight, np.float64, "weight")
        if (w < 0).any() if full else (w[present] < 0).any():
            raise ValueError("run_panel: target weights must be >= 0 (long only)")
        if signal is not None:
            both = ((~np.isnan(w)) & present).any(axis=0) & (sig != 0).any(axis=0)
            if both.any():
                raise ValueError(f"run_panel: {names[int(np.argmax(both))]} has both signals and target weights")
        f["tw"] = flat(w)
    elif _weights_pending(state):  # a resume without new decisions still executes the pending ones
        f["tw"] = np.full(len(f["ts"]), math.nan)
    if group is not None:
        f["grp"] = flat(mat(group, np.int64, "group"))
    for k, v in (per_signal or {}).items():
        if k not in _PER_SIGNAL:
            raise ValueError(f"run_panel: unknown per-signal input {k!r} (known: {', '.join(_PER_SIGNAL)})")
        f[k] = flat(mat(v, np.float64, k))
    lot = np.broadcast_to(np.asarray(0.0 if lot_step is None else lot_step, np.float64), (n,)).copy()
    sym = _symbol_ids(list(symbols) if symbols is not None else list(names))
    n_ts = T if full else int(np.count_nonzero(present.any(axis=1)))
    return _execute(
        f, names, plist, lot, sym, np.zeros(0), np.zeros(0), state, limits, record_bars, record_skipped, record_orders,
        n_ts,
    )  # fmt: skip


def step(
    state: EngineState,
    ts: int,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    params: SimParams | list[SimParams],
    **inputs,
) -> EngineResult:
    """Advance ``state`` by one closed bar per asset (the paper-trading step): :func:`run_panel` with ``T = 1``.

    ``open``..``close`` float ``(N,)`` (NaN close = no bar for that asset); ``inputs``: :func:`run_panel`'s
    keyword inputs as ``(N,)`` arrays (``weight``, ``signal``, ``atr``, ``group``, ...) and its options
    (``limits``, ``record_bars``, ``record_skipped``, ``record_orders``, ``lot_step``, ``symbols``)."""
    opts = {"limits", "record_bars", "record_skipped", "record_orders", "lot_step", "symbols", "per_signal"}
    rows = {k: (np.asarray(v)[None, :] if k not in opts else v) for k, v in inputs.items()}
    if rows.get("per_signal"):
        rows["per_signal"] = {k: np.asarray(v)[None, :] for k, v in rows["per_signal"].items()}
    return run_panel(
        np.array([ts], np.int64),
        np.asarray(open, np.float64)[None, :],
        np.asarray(high, np.float64)[None, :],
        np.asarray(low, np.float64)[None, :],
        np.asarray(close, np.float64)[None, :],
        params,
        names=state.names,
        state=state,
        **rows,
    )


def _empty_result(state: EngineState, names: list[str]) -> EngineResult:
    e = np.zeros(0)
    i0 = np.zeros(0, np.int64)
    book = {"ts": i0, "equity": e, "pv": e, "gross": e, "npos": i0, "state": e, "scale": e, "gopen": e, "eopen": e}
    bars = {"asset": i0, "ts": i0, "close": e, "position": e, "equity": e}
    return EngineResult(np.zeros((0, _NR)), bars, book, state, names)
