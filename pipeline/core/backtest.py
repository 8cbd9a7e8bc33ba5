"""Portfolio accounting over many symbols and buy-and-hold benchmarks (pure).

Portfolio model (``research.backtest.book``): every symbol runs through the one engine
(:func:`pipeline.core.engine.run`) in time order. ``shared`` (the reported book): one cash account, each entry's
margin is equity / ``max_positions`` and at most ``max_positions`` positions are open at once (an entry beyond it is
denied, order row ``denied_max_positions``). ``sleeves``: the starting capital is split equally into one account per
symbol that compounds on its own (the book before issue 15); the portfolio is the sum of the sleeves on the union of
their bar times (a sleeve holds its cash before its first bar and its last equity after its last bar). ``cash`` is spot-equivalent cash (equity minus the signed value of the
open positions) and ``gross_exposure`` is sum |position value| / equity.

Metrics are the project's one :func:`pipeline.core.metrics.metrics` (daily UTC closes, 365 periods a year).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.costs import Costs, spot_costs
from pipeline.core.engine import AssetInput, Limits, run
from pipeline.core.metrics import N_TRIALS, metrics
from pipeline.core.params import Params
from pipeline.core.plots import pyplot, to_png
from pipeline.core.simulator import SimParams, SimResult


class BacktestConfig(Params):
    """``research.backtest``: the baseline long/flat strategy, its costs and its execution delay."""

    strategy: str = Field("baseline_long_flat", description="Name recorded in backtest.runs.")
    symbols: list[str] | None = Field(None, description="Universe of the baseline backtest (null = universe.symbols).")
    enter_threshold: float = Field(0.45, ge=0, le=1, description="Go long when calibrated p(TP first) >= this.")
    sl_atr: float | None = Field(None, description="Stop, ATR multiples (null = the label's sl_atr).")
    tp_atr: float | None = Field(None, description="Target, ATR multiples (null = the label's tp_atr).")
    max_bars: int | None = Field(None, description="Time stop in bars (null = the label's max_bars).")
    init_cash: float = Field(100_000.0, gt=0, description="Starting capital, quote currency, split equally per symbol.")
    costs: Costs = Field(default_factory=spot_costs, description="Fees and slippage (Binance spot: 10 / 10 / 2 bps).")
    latency_bars: int = Field(0, ge=0, description="Bars between decision and execution beyond the next open.")
    resolve_intrabar_with: str | None = Field(
        "15m", description="Finer timeframe used when SL and TP share a bar (null = stop first)."
    )
    book: Literal["shared", "sleeves"] = Field(
        "shared", description="shared: one cash account for all symbols; sleeves: one equal account per symbol."
    )
    max_positions: int | None = Field(
        None,
        ge=1,
        description="Shared book: most concurrent positions; each entry's margin is equity / this "
        "(null = the number of symbols).",
    )


def combine_sleeves(sleeves: dict[str, SimResult], init_cash_each: float) -> pd.DataFrame:
    """Portfolio per bar time from per-symbol simulations (each run with ``record_bars``).

    Returns:
        Frame sorted by ``ts`` (epoch ms UTC): ``equity``, ``cash``, ``position_value`` (signed), ``gross_exposure``
        (fraction of equity), ``n_positions``.
    """
    if not sleeves:
        return pd.DataFrame(columns=["ts", "equity", "cash", "position_value", "gross_exposure", "n_positions"])
    grid = np.unique(np.concatenate([r.bars["ts"].to_numpy(np.int64) for r in sleeves.values()]))
    eq = np.zeros(len(grid))
    pv = np.zeros(len(grid))
    gross = np.zeros(len(grid))
    npos = np.zeros(len(grid), np.int64)
    for r in sleeves.values():
        b = r.bars
        j = np.searchsorted(b["ts"].to_numpy(np.int64), grid, side="right") - 1  # last bar at or before grid time
        have = j >= 0
        jj = np.clip(j, 0, None)
        e = np.where(have, b["equity"].to_numpy()[jj], init_cash_each)
        # after a sleeve's last bar its position is still valued at its last close (no look-ahead)
        v = np.where(have, (b["position"] * b["close"]).to_numpy()[jj], 0.0)
        eq += e
        pv += v
        gross += np.abs(v)
        npos += (np.abs(v) > 0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ge = np.where(eq > 0, gross / eq, np.nan)
    return pd.DataFrame(
        {"ts": grid, "equity": eq, "cash": eq - pv, "position_value": pv, "gross_exposure": ge, "n_positions": npos}
    )


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Drawdown per bar as a fraction (<= 0) of the running peak."""
    e = np.asarray(equity, np.float64)
    return e / np.maximum.accumulate(e) - 1.0


def buy_and_hold(closes: dict[str, pd.DataFrame], start_ts: int, end_ts: int, init_cash: float) -> pd.DataFrame:
    """Equal-weight buy-and-hold of the same universe over ``[start_ts, end_ts]``, no rebalancing, no costs.

    ``closes``: per symbol a frame with ``ts`` and ``close``. A symbol listed later than ``start_ts`` is bought
    at its first close (its share is held in cash until then). Returns ``ts``, ``equity``.
    """
    if not closes:
        return pd.DataFrame(columns=["ts", "equity"])
    each = init_cash / len(closes)
    parts = []
    for df in closes.values():
        d = df[(df["ts"] >= start_ts) & (df["ts"] <= end_ts)]
        parts.append(d[["ts"]])
    grid = np.unique(np.concatenate([p["ts"].to_numpy(np.int64) for p in parts])) if parts else np.zeros(0, np.int64)
    eq = np.zeros(len(grid))
    for df in closes.values():
        d = df[(df["ts"] >= start_ts) & (df["ts"] <= end_ts)]
        if d.empty:
            eq += each
            continue
        t, c = d["ts"].to_numpy(np.int64), d["close"].to_numpy(np.float64)
        j = np.searchsorted(t, grid, side="right") - 1
        eq += np.where(j >= 0, each * c[np.clip(j, 0, None)] / c[0], each)
    return pd.DataFrame({"ts": grid, "equity": eq})


def equity_plot(
    ts: np.ndarray, equity: np.ndarray, benchmark: np.ndarray | None = None, title: str = "Equity"
) -> bytes:
    """PNG bytes: equity (and benchmark) on top, drawdown below."""
    plt = pyplot()
    t = pd.to_datetime(np.asarray(ts, np.int64), unit="ms")
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a.plot(t, equity, lw=1, label="strategy")
    if benchmark is not None:
        a.plot(t, benchmark, lw=1, alpha=0.7, label="buy & hold")
    a.set_title(title)
    a.set_yscale("log")
    a.legend(loc="upper left")
    b.fill_between(t, drawdown(equity) * 100, 0, color="tab:red", alpha=0.4)
    b.set_ylabel("drawdown %")
    return to_png(fig, dpi=72)


#: the headline metrics of a backtest next to its benchmark (metadata tables and ``trader setups analyze-results``)
SUMMARY_METRICS = [
    "total_return",
    "annual_return",
    "sharpe",
    "psr",
    "dsr",
    "max_drawdown",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy_ret",
    "exposure",
    "turnover",
    "cost_drag",
    "breakeven_cost_bps",
]
PER_SYMBOL_COLUMNS = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "profit_factor", "avg_r")


def long_flat_params(bt: BacktestConfig, label, init_cash: float) -> SimParams:
    """Simulator parameters of the baseline long/flat strategy: ``bt``'s levels, or the label's barriers
    (``label.sl_atr`` / ``tp_atr`` / ``max_bars``) where ``bt`` leaves them unset; ``bt``'s costs and latency."""
    return SimParams(
        init_cash=init_cash,
        sl_atr=bt.sl_atr or label.sl_atr,
        tp_atr=bt.tp_atr or label.tp_atr,
        max_bars=bt.max_bars or label.max_bars,
        latency_bars=bt.latency_bars,
        **bt.costs.sim_kwargs(),
    )


def with_benchmark(port: pd.DataFrame, bench: pd.DataFrame, init_cash: float) -> pd.DataFrame:
    """``port`` with ``benchmark_equity`` (buy-and-hold equity at or before each bar; ``init_cash`` before its first
    bar) and ``drawdown`` (fraction of the running equity peak) added: the ``backtest.equity`` form."""
    out = port.merge(bench.rename(columns={"equity": "benchmark_equity"}), on="ts", how="left")
    out["benchmark_equity"] = out["benchmark_equity"].ffill().fillna(init_cash)
    out["drawdown"] = out["equity"] / out["equity"].cummax() - 1.0
    return out


def reconcile(final_equity: float, init_cash: float, trades: pd.DataFrame | None) -> tuple[float, int]:
    """Accounting invariant of a backtest: ``(|final equity − init cash − Σ trade PnL|, trades exiting before entry)``.

    Open trades are marked at their last close by the simulator, so the error is float noise when the books balance.
    """
    pnl = float(trades["pnl"].sum()) if trades is not None and len(trades) else 0.0
    bad = int((trades["exit_ts"] < trades["entry_ts"]).sum()) if trades is not None and len(trades) else 0
    return abs(float(final_equity) - init_cash - pnl), bad


@dataclass
class BacktestOutput:
    """A multi-symbol backtest: trades and orders (with ``symbol``), the portfolio per bar with benchmark and drawdown,
    metrics and the buy-and-hold benchmark's metrics, per-symbol metrics, the simulator parameters, the period (ms)."""

    trades: pd.DataFrame
    orders: pd.DataFrame
    equity: pd.DataFrame
    metrics: dict
    benchmark: dict
    per_symbol: pd.DataFrame
    params: SimParams
    period: tuple[int, int]


def long_flat_backtest(
    bars_by_symbol: dict[str, pd.DataFrame],
    preds: pd.DataFrame,
    enter_threshold: float,
    params: SimParams,
    init_cash: float,
    step_ms: int,
    fine_by_symbol: dict[str, pd.DataFrame | None] | None = None,
    book: str = "sleeves",
    max_positions: int | None = None,
) -> BacktestOutput:
    """Long/flat on calibrated out-of-sample probabilities through the engine, all symbols in time order.

    Args:
        bars_by_symbol: simulator bars (``ts, open, high, low, close, atr``) per symbol over the predictions' period.
        preds: ``symbol, ts, p_cal``; a bar is long-entry when ``p_cal >= enter_threshold`` (NaN never enters).
        params: simulator parameters of one sleeve (``init_cash`` = ``init_cash / len(bars_by_symbol)``).
        fine_by_symbol: finer ``ts, high, low`` per symbol that decides bars where SL and TP are both inside the range.
        book: ``sleeves`` (one equal account per symbol) or ``shared`` (one account of ``init_cash``; margin per entry
            equity / ``max_positions``, at most ``max_positions`` open; null = the number of symbols).

    Returns:
        The portfolio next to equal-weight buy-and-hold of the same symbols over the same period. ``params`` is the
        parameters the engine ran (shared: ``init_cash`` the whole book, ``size_fraction`` 1 / ``max_positions``).

    Raises:
        ValueError: no calibrated prediction to trade on, or an unknown ``book``.
    """
    have = preds[preds["p_cal"].notna()]
    if have.empty:
        raise ValueError("no calibrated out-of-sample predictions to backtest; train the model first")
    if book not in ("shared", "sleeves"):
        raise ValueError(f"book must be shared or sleeves, not {book!r}")
    start, end = int(have["ts"].min()), int(have["ts"].max())
    inputs, closes = {}, {}
    for sym, bars in bars_by_symbol.items():
        if bars.empty:
            continue
        p = bars[["ts"]].merge(have[have["symbol"] == sym][["ts", "p_cal"]], on="ts", how="left")["p_cal"].to_numpy()
        fine = (fine_by_symbol or {}).get(sym)
        inputs[sym] = AssetInput(bars, np.where(p >= enter_threshold, 1, 0), fine=fine, step_ms=step_ms)
        closes[sym] = bars[["ts", "close"]]
    if book == "shared":
        k = max_positions or max(1, len(bars_by_symbol))
        params = dataclasses.replace(params, init_cash=init_cash, size_fraction=1.0 / k)
        res = run(inputs, params, limits=Limits(max_positions=k))
    else:
        res = run(inputs, params, account="sleeves")
    trades, orders = res.trades(), res.orders()
    trades.insert(0, "symbol", trades.pop("asset"))
    orders.insert(0, "symbol", orders.pop("asset"))
    rows = []
    ab = res.asset_bars
    for j, sym in enumerate(inputs):
        t = trades[trades["symbol"] == sym]
        if book == "sleeves":
            k = ab["asset"] == j
            m = metrics(ab["ts"][k], ab["equity"][k], t, known_after_ms=step_ms)
        else:  # one account: the symbol's own curve is its share of the start plus its PnL, marked per bar
            m = metrics(*_symbol_curve(ab, j, t, init_cash / len(inputs)), t, known_after_ms=step_ms)
        rows.append({"symbol": sym, **{k_: v for k_, v in m.items() if k_ in PER_SYMBOL_COLUMNS}})
    port = res.book
    if book == "sleeves":  # sleeves of symbols without bars hold their cash
        port = port.assign(equity=port["equity"] + params.init_cash * (len(bars_by_symbol) - len(inputs)))
        port = port.assign(cash=port["equity"] - port["position_value"])
    bench = buy_and_hold(closes, start, end, init_cash)
    port = with_benchmark(port, bench, init_cash)
    closed = trades[trades["exit_reason"] != "open"] if len(trades) else trades
    m = metrics(
        port["ts"].to_numpy(),
        port["equity"].to_numpy(),
        closed,
        port["gross_exposure"].to_numpy(),
        known_after_ms=step_ms,
        n_trials=N_TRIALS["baseline"],
    )
    benchmark = metrics(bench["ts"].to_numpy(), bench["equity"].to_numpy(), known_after_ms=step_ms)
    return BacktestOutput(trades, orders, port, m, benchmark, pd.DataFrame(rows), params, (start, end))


def _symbol_curve(ab: dict, j: int, trades: pd.DataFrame, start_cash: float) -> tuple[np.ndarray, np.ndarray]:
    """One symbol of a shared book: ``(ts, start_cash + realised PnL up to the bar + open PnL marked at its close)``."""
    k = ab["asset"] == j
    ts, pos, c = ab["ts"][k], ab["position"][k], ab["close"][k]
    closed = trades[trades["exit_reason"] != "open"]
    realised = np.zeros(len(ts))
    if len(closed):
        at = np.searchsorted(ts, closed["exit_ts"].to_numpy(np.int64))
        np.add.at(realised, np.clip(at, 0, len(ts) - 1), closed["pnl"].to_numpy())
    realised = np.cumsum(realised)
    # open PnL of the position held over each bar (entry fee already in pnl at exit): a symbol holds one position at
    # a time, so a bar with a position belongs to the latest trade entered at or before it
    by_entry = trades.sort_values("entry_ts", kind="stable")
    latest = np.full(len(ts), -1)
    latest[np.searchsorted(ts, by_entry["entry_ts"].to_numpy(np.int64))] = np.arange(len(by_entry))
    latest = np.maximum.accumulate(latest)
    entry = np.where(latest >= 0, by_entry["entry_price"].to_numpy(np.float64)[np.maximum(latest, 0)], 0.0)
    open_pnl = np.where(pos != 0, pos * (c - entry), 0.0)
    return ts, start_cash + realised + open_pnl
