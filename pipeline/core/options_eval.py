"""Model-based evaluation of the options desk's trades (pure).

**Option prices here are model estimates, not market quotes**: Black–Scholes (Black & Scholes, 1973) with
r = 0 and an implied-volatility proxy = realized volatility of BTC's daily log returns over the 30 days
before the decision, annualised with 365 days, times ``1 + iv_premium`` (options usually price above
realized volatility). Each trade buys its structure at the decision day's price and holds to expiry; the
payoff is intrinsic value at the expiry day's price. Alongside, each trade is scored by the underlying's
move over its DTE in the trade's direction.

The account model for an equity curve: each taken trade spends ``premium_budget × size`` of current equity on
premium; its P&L (payoff/premium − 1 of that spend) is booked at expiry.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm


def bs_price(spot, strike, t_years, vol, call: bool) -> np.ndarray:
    """Black–Scholes price (r = 0, no dividends) in USD per BTC; arrays broadcast. ``t_years`` > 0, ``vol`` > 0."""
    s, k, t, v = (np.asarray(x, float) for x in (spot, strike, t_years, vol))
    sd = v * np.sqrt(np.maximum(t, 0.0))
    ok = sd > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(s / k) + 0.5 * sd**2) / np.where(ok, sd, 1.0)
    d2 = d1 - sd
    c = np.where(ok, s * norm.cdf(d1) - k * norm.cdf(d2), np.maximum(s - k, 0.0))  # zero volatility: intrinsic value
    return np.where(call, c, c - s + k)


def realized_vol(price: pd.Series, window: int = 30) -> pd.Series:
    """Annualised (365 d) standard deviation of daily log returns over the trailing ``window`` days."""
    return np.log(price).diff().rolling(window, min_periods=window).std() * math.sqrt(365)


def evaluate_trades(trades: pd.DataFrame, price: pd.Series, iv_premium: float = 0.10) -> pd.DataFrame:
    """Premium, payoff and returns of each trade.

    Args:
        trades: ``signals.options_trades`` rows (date, expiry, structure, strike_long, strike_short, direction, size).
        price: BTC daily price (USD) indexed by date (the decision price of day D is D's close).

    Returns:
        ``trades`` plus ``iv`` (fraction/yr), ``spot_entry``, ``spot_expiry``, ``premium`` and ``payoff`` (USD per
        BTC of structure), ``option_ret`` (payoff / premium − 1), ``underlying_ret`` (signed by direction),
        ``hit`` (option P&L > 0), ``direction_hit``. A trade has an outcome only where its premium is positive and its
        expiry lies within the data; elsewhere ``option_ret``, ``hit``, ``underlying_ret`` and ``direction_hit`` are NaN
        (a structure priced at 0 — e.g. a spread with both legs on one strike — cannot be bought, so it has no return).
    """
    t = trades.copy()
    d = pd.to_datetime(t["date"])
    exp = pd.to_datetime(t["expiry"])
    vol = realized_vol(price)
    t["iv"] = d.map(vol).to_numpy() * (1 + iv_premium)
    t["spot_entry"] = d.map(price).to_numpy()
    t["spot_expiry"] = exp.map(price).to_numpy()
    years = (exp - d).dt.days.to_numpy() / 365.0
    call = t["structure"].isin(["LONG_CALL", "CALL_SPREAD"]).to_numpy()
    k1, k2 = t["strike_long"].to_numpy(float), t["strike_short"].astype(float).to_numpy()
    spread = ~np.isnan(k2)
    long_leg = bs_price(t["spot_entry"], k1, years, t["iv"], call)
    short_leg = np.where(spread, bs_price(t["spot_entry"], np.where(spread, k2, k1), years, t["iv"], call), 0.0)
    t["premium"] = long_leg - short_leg
    st = t["spot_expiry"].to_numpy(float)
    intrinsic = lambda k: np.where(call, np.maximum(st - k, 0), np.maximum(k - st, 0))  # noqa: E731
    t["payoff"] = intrinsic(k1) - np.where(spread, intrinsic(np.where(spread, k2, k1)), 0.0)
    t.loc[np.isnan(st), "payoff"] = np.nan
    bought = t["premium"] > 0
    t["option_ret"] = (t["payoff"] / t["premium"] - 1.0).where(bought)
    t["underlying_ret"] = (t["direction"] * (t["spot_expiry"] / t["spot_entry"] - 1.0)).where(bought)
    t["hit"] = (t["option_ret"] > 0).where(t["option_ret"].notna())
    t["direction_hit"] = (t["underlying_ret"] > 0).where(t["underlying_ret"].notna())
    return t


def equity_curve(ev: pd.DataFrame, premium_budget: float = 0.02, init: float = 1.0) -> pd.DataFrame:
    """Account equity booked at each expiry: spend ``premium_budget × size × equity(entry)`` per trade.

    Returns ``ts`` (epoch ms of the expiry date, UTC) and ``equity``; trades without outcome are skipped.
    """
    done = ev[ev["option_ret"].notna()].sort_values("expiry")
    if done.empty:
        return pd.DataFrame({"ts": np.zeros(0, np.int64), "equity": np.zeros(0)})
    growth = 1.0 + premium_budget * done["size"].to_numpy() * done["option_ret"].to_numpy()
    eq = init * np.cumprod(np.maximum(growth, 0.0))
    ts = pd.to_datetime(done["expiry"]).astype("datetime64[ms]").astype(np.int64).to_numpy()
    out = pd.DataFrame({"ts": ts, "equity": eq}).groupby("ts", as_index=False).last()
    return out


def summary(ev: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """Hit rates and average outcomes per group (e.g. ``trade_type``, ``state``, year)."""
    done = ev[ev["option_ret"].notna()]
    g = done.groupby(by, dropna=False)
    return pd.DataFrame(
        {
            "trades": g.size(),
            "option_hit_rate": g["hit"].mean(),
            "avg_option_ret": g["option_ret"].mean(),
            "median_option_ret": g["option_ret"].median(),
            "direction_hit_rate": g["direction_hit"].mean(),
            "avg_underlying_ret": g["underlying_ret"].mean(),
        }
    ).reset_index()


def always_on(price: pd.Series, trade_type: str, every_days: int, sp, start, end) -> pd.DataFrame:
    """A naive benchmark: buy ``trade_type``'s structure (``LONG`` = long call, ``PRIMARY_SHORT`` = long put) every
    ``every_days`` days between ``start`` and ``end``, with the desk's own strikes and expiries
    (:func:`pipeline.core.options_fusion.option_structure` with ``sp``, DTE multiplier 1)."""
    from pipeline.core.options_fusion import option_structure

    dates = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=f"{every_days}D")
    spot = dates.map(price)
    keep = ~np.isnan(spot.to_numpy(float))
    rows = [option_structure(trade_type, s, d, 1.0, sp) for d, s in zip(dates[keep], spot[keep])]
    out = pd.DataFrame(rows, columns=["structure", "strike_long", "strike_short", "expiry", "dte"])
    return out.assign(
        date=dates[keep],
        expiry=pd.to_datetime(out["expiry"]),
        strike_short=out["strike_short"].astype(float),
        direction=1 if trade_type == "LONG" else -1,
        size=1.0,
        trade_type="ALWAYS_" + out["structure"],
    )


TACTICAL_GROUP = "tactical_hedge"


def desk_evaluation(trades: pd.DataFrame, price: pd.Series, sp) -> dict:
    """The options desk's whole evaluation: taken trades and the always-on benchmarks over the same period.

    Args:
        trades: taken ``signals.options_trades`` rows with their day's ``state``, sorted by ``date``.
        price: BTC's daily USD price indexed by date (datetime64).
        sp: the structure parameters (``options_desk.decisions.structures``: DTEs, moneyness, strike grid).

    Returns:
        ``ev`` (per-trade evaluation), ``equity`` (the account curve), ``metrics`` (performance plus ``n_trades`` with an
        outcome, ``n_without_outcome``, and hit rates and average return over the trades with an outcome, fractions),
        ``benchmark`` (buy-and-hold BTC, always-on weekly calls, always-on weekly puts), ``by_state`` (by the day's
        fusion state; tactical hedges, which the seed opens *inside* bull regimes, form their own group
        ``tactical_hedge``), ``by_year``, ``by_trade_type`` (:func:`summary` tables), ``start`` / ``end`` (Timestamps).
    """
    from pipeline.core.backtest import performance

    ev = evaluate_trades(trades, price)
    start, end = pd.Timestamp(ev["date"].min()), pd.Timestamp(ev["date"].max())
    calls = evaluate_trades(always_on(price, "LONG", 7, sp, start, end), price)
    puts = evaluate_trades(always_on(price, "PRIMARY_SHORT", 7, sp, start, end), price)
    eq = equity_curve(ev)
    done = ev[ev["option_ret"].notna()]
    bh = price[(price.index >= start) & (price.index <= end)].dropna()
    bh_ts = bh.index.astype("datetime64[ms]").astype("int64").to_numpy()
    metrics = {
        **performance(eq["ts"].to_numpy(), eq["equity"].to_numpy()),
        "n_trades": float(len(done)),
        "n_without_outcome": float(len(ev) - len(done)),
        "option_hit_rate": float(done["hit"].mean()),
        "direction_hit_rate": float(done["direction_hit"].mean()),
        "avg_option_ret": float(done["option_ret"].mean()),
    }
    bench = {
        "buy_and_hold": performance(bh_ts, bh.to_numpy()),
        "always_on_calls": {
            **performance(equity_curve(calls)["ts"].to_numpy(), equity_curve(calls)["equity"].to_numpy()),
            "n_trades": float(calls["option_ret"].notna().sum()),
            "option_hit_rate": float(calls["hit"].mean()),
            "direction_hit_rate": float(calls["direction_hit"].mean()),
        },
        "always_on_puts": {
            **performance(equity_curve(puts)["ts"].to_numpy(), equity_curve(puts)["equity"].to_numpy()),
            "n_trades": float(puts["option_ret"].notna().sum()),
            "option_hit_rate": float(puts["hit"].mean()),
            "direction_hit_rate": float(puts["direction_hit"].mean()),
        },
    }
    return {
        "ev": ev,
        "equity": eq,
        "metrics": metrics,
        "benchmark": bench,
        "by_state": summary(ev.assign(state=state_group(ev)), "state"),
        "by_year": summary(ev.assign(year=pd.to_datetime(ev["date"]).dt.year), "year"),
        "by_trade_type": summary(ev, "trade_type"),
        "start": start,
        "end": end,
    }


def state_group(ev: pd.DataFrame) -> pd.Series:
    """The group a trade is reported under: its day's fusion ``state``, except tactical hedges (``TACTICAL_PUT``,
    bought inside a bull state to protect it) which are :data:`TACTICAL_GROUP`."""
    return ev["state"].where(ev["trade_type"] != "TACTICAL_PUT", TACTICAL_GROUP)


DAY_MS = 86_400_000


def trade_rows(ev: pd.DataFrame) -> pd.DataFrame:
    """``backtest.trades`` rows of evaluated option trades, in the table's common meaning
    (:data:`warehouse.schema.TRADE_COLUMNS`).

    ``symbol`` ``BTC/USD`` (the underlying, priced by Coin Metrics' USD reference rate); ``instrument`` the structure
    (``LONG_CALL``, ``CALL_SPREAD``, ``LONG_PUT``, ``PUT_SPREAD``, ``TACTICAL_PUT``); ``entry_price`` the premium paid and
    ``exit_price`` the value at expiry (USD per BTC of structure, model-based); ``underlying_entry_price`` /
    ``underlying_exit_price`` BTC's price those prices were computed from. ``entry_ts`` / ``exit_ts`` are the instants of
    those prices: the close of the decision day and of the expiry day (00:00 UTC the next day, when the day's on-chain
    row is complete; ``signal_ts`` = ``entry_ts``). ``units`` = size (BTC of structure), ``notional`` = premium × size,
    no fees (model premium); ``ret`` = ``r_multiple`` = payoff / premium − 1 (the premium is the risk). ``exit_reason``:
    ``expiry``, ``open`` (expiry beyond the data) or ``unpriced`` (no positive model premium: no outcome).
    """
    d_ms = pd.to_datetime(ev["date"]).astype("datetime64[ms]").astype("int64") + DAY_MS
    x_ms = pd.to_datetime(ev["expiry"]).astype("datetime64[ms]").astype("int64") + DAY_MS
    return pd.DataFrame(
        {
            "trade_id": range(len(ev)),
            "symbol": "BTC/USD",
            "instrument": ev["structure"],
            "direction": ev["direction"].astype(int),
            "signal_ts": d_ms,
            "entry_ts": d_ms,
            "exit_ts": x_ms,
            "entry_time": pd.to_datetime(d_ms, unit="ms"),
            "exit_time": pd.to_datetime(x_ms, unit="ms"),
            "entry_price": ev["premium"],
            "exit_price": ev["payoff"],
            "underlying_entry_price": ev["spot_entry"],
            "underlying_exit_price": ev["spot_expiry"],
            "units": ev["size"],
            "notional": ev["premium"] * ev["size"],
            "fees": 0.0,
            "pnl": ((ev["payoff"] - ev["premium"]) * ev["size"]).where(ev["option_ret"].notna()),
            "ret": ev["option_ret"],
            "exit_reason": np.select(
                [ev["option_ret"].notna().to_numpy(), ev["payoff"].isna().to_numpy()], ["expiry", "open"], "unpriced"
            ),
            "r_multiple": ev["option_ret"],
            "tp1_hit": False,
            "bars_held": (x_ms - d_ms) // DAY_MS,
        }
    )
