"""Model-based evaluation of the options desk's trades (pure).

**Option prices here are model estimates, not market quotes**: Black–Scholes (Black & Scholes, 1973) with
r = 0 and an implied-volatility proxy = realized volatility of BTC's daily log returns over the 30 days
before the decision, annualised with 365 days, times ``1 + iv_premium`` (options usually price above
realized volatility). Each trade buys its structure at the decision day's price and holds to expiry; the
payoff is intrinsic value at the expiry day's price. Alongside, each trade is scored by the underlying's
move over its DTE in the trade's direction.

The account model (:func:`daily_book`): each taken trade spends ``premium_budget × size`` of the decision day's
equity on premium; every open structure is marked daily with the same model (that day's price and IV proxy) and
settles at intrinsic value on its expiry day, so the desk has a daily equity curve for
:func:`pipeline.core.metrics.metrics` like every other desk.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit
from scipy.stats import norm

DAY_MS = 86_400_000


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


@njit(cache=True)
def _book_kernel(
    n_days, pair_day, pair_trade, pair_rel, entry_day, exit_day, frac, entry_order, init
):  # pragma: no cover
    """Day loop of :func:`daily_book` (pairs sorted by day): equity, open value, and each trade's spend."""
    n_pairs, n_trades = len(pair_day), len(entry_day)
    eq, open_value, spend = np.empty(n_days), np.zeros(n_days), np.zeros(n_trades)
    cash, p, q = init, 0, 0
    for d in range(n_days):
        p0, held = p, 0.0
        while p < n_pairs and pair_day[p] == d:  # positions bought before today, marked at today's price and vol
            k = pair_trade[p]
            if entry_day[k] < d:
                held += spend[k] * pair_rel[p]
            p += 1
        e = cash + held
        while q < n_trades and entry_day[entry_order[q]] == d:  # buy: premium budget x size of today's equity
            k = entry_order[q]
            spend[k] = frac[k] * e
            cash -= spend[k]
            q += 1
        for j in range(p0, p):  # settle today's expiries at intrinsic value; the rest stays open
            k = pair_trade[j]
            v = spend[k] * pair_rel[j]
            if exit_day[k] == d:
                cash += v
            else:
                open_value[d] += v
        eq[d] = e
    return eq, open_value, spend


def daily_book(
    ev: pd.DataFrame, price: pd.Series, premium_budget: float = 0.02, init: float = 1.0, iv_premium: float = 0.10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The desk's account marked every day with its own pricing model: ``(daily curve, the account's trades)``.

    Each trade with a positive premium buys, at its decision day's close, ``premium_budget × size`` of that day's
    equity of its structure; every day after, an open structure is worth its Black–Scholes value
    (:func:`bs_price`) at that day's price, the time left to expiry and that day's IV proxy (:func:`realized_vol` of
    the prices up to that day × (1 + ``iv_premium``)) — only what is known at the day's close, no look-ahead; on its
    expiry day it is worth its intrinsic value (= ``payoff``) and settles into cash. Equity = cash + marked value.

    Args:
        ev: :func:`evaluate_trades` rows (``date``, ``expiry``, ``structure``, ``strike_long``, ``strike_short``,
            ``size``, ``premium``, ``payoff``, ``option_ret``). price: BTC daily USD price indexed by date.

    Returns:
        Curve from the first decision day to the last expiry (or the price's last day, if earlier): ``ts`` (epoch ms at which the day's equity is
        known: the next 00:00 UTC, as :func:`trade_rows`), ``equity``, ``cash``, ``position_value`` (marked open
        structures), ``gross_exposure`` (position value / equity), ``n_positions``; and the trades with an outcome in
        the account's currency for :func:`pipeline.core.metrics.metrics`: ``entry_ts`` / ``exit_ts``, ``notional``
        (premium spent), ``units`` (structures bought), ``avg_exit_price`` (payoff per structure), ``pnl``, ``ret`` =
        ``r_multiple`` = ``option_ret``, ``fees`` 0. Empty frames when no trade was bought.
    """
    empty = pd.DataFrame({c: np.zeros(0) for c in ("ts", "equity", "cash", "position_value", "gross_exposure")})
    bought = ev[(ev["premium"] > 0) & ev["premium"].notna()].reset_index(drop=True)
    if bought.empty:
        return empty.assign(ts=empty["ts"].astype(np.int64)), pd.DataFrame()
    d0 = pd.Timestamp(pd.to_datetime(bought["date"]).min())
    days = pd.date_range(d0, min(price.index.max(), pd.to_datetime(bought["expiry"]).max()), freq="D")
    spot = price.reindex(days).ffill().to_numpy(float)  # a missing day keeps the last known price (and vol)
    vol = realized_vol(price).reindex(days).ffill().to_numpy(float) * (1 + iv_premium)
    e_day = ((pd.to_datetime(bought["date"]) - d0).dt.days).to_numpy(np.int64)
    x_day = ((pd.to_datetime(bought["expiry"]) - d0).dt.days).to_numpy(np.int64)
    last = np.minimum(x_day, len(days) - 1)
    n_held = last - e_day + 1
    k = np.repeat(np.arange(len(bought)), n_held)
    day = np.concatenate([np.arange(a, b + 1) for a, b in zip(e_day, last)])
    call = bought["structure"].isin(["LONG_CALL", "CALL_SPREAD"]).to_numpy()[k]
    k1, k2 = bought["strike_long"].to_numpy(float)[k], bought["strike_short"].astype(float).to_numpy()[k]
    spread = ~np.isnan(k2)
    t_left = (x_day[k] - day) / 365.0
    mark = bs_price(spot[day], k1, t_left, vol[day], call) - np.where(
        spread, bs_price(spot[day], np.where(spread, k2, k1), t_left, vol[day], call), 0.0
    )
    rel = mark / bought["premium"].to_numpy(float)[k]
    order = np.lexsort((k, day))
    frac = premium_budget * bought["size"].to_numpy(float)
    eq, pos, spend = _book_kernel(
        len(days), day[order], k[order], rel[order], e_day, x_day, frac, np.argsort(e_day, kind="stable"), float(init)
    )
    npos = np.bincount(day[day < x_day[k]], minlength=len(days))
    ts = (days.astype("datetime64[ms]").astype(np.int64) + DAY_MS).to_numpy()
    curve = pd.DataFrame(
        {
            "ts": ts,
            "equity": eq,
            "cash": eq - pos,
            "position_value": pos,
            "gross_exposure": pos / eq,
            "n_positions": npos,
        }
    )
    done = bought["option_ret"].notna().to_numpy() & (x_day < len(days))
    b = bought[done]
    units = spend[done] / b["premium"].to_numpy(float)
    d_ms = pd.to_datetime(b["date"]).astype("datetime64[ms]").astype("int64").to_numpy() + DAY_MS
    x_ms = pd.to_datetime(b["expiry"]).astype("datetime64[ms]").astype("int64").to_numpy() + DAY_MS
    book = pd.DataFrame(
        {
            "entry_ts": d_ms,
            "exit_ts": x_ms,
            "notional": spend[done],
            "units": units,
            "avg_exit_price": b["payoff"].to_numpy(float),
            "pnl": spend[done] * b["option_ret"].to_numpy(float),
            "ret": b["option_ret"].to_numpy(float),
            "r_multiple": b["option_ret"].to_numpy(float),
            "fees": 0.0,
        }
    )
    return curve, book


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
        ``ev`` (per-trade evaluation), ``equity`` (the account marked daily, :func:`daily_book`), ``metrics``
        (:func:`pipeline.core.metrics.metrics` of that daily curve and its trades, plus ``n_trades`` with an
        outcome, ``n_without_outcome``, and hit rates and average return over the trades with an outcome, fractions),
        ``benchmark`` (buy-and-hold BTC, always-on weekly calls, always-on weekly puts), ``by_state`` (by the day's
        fusion state; tactical hedges, which the seed opens *inside* bull regimes, form their own group
        ``tactical_hedge``), ``by_year``, ``by_trade_type`` (:func:`summary` tables), ``start`` / ``end`` (Timestamps).
    """
    from pipeline.core.metrics import N_TRIALS, metrics

    def account(e: pd.DataFrame, n_trials: int = 1) -> tuple[pd.DataFrame, dict]:
        curve, book = daily_book(e, price)
        if curve.empty:
            return curve, {"n_days": 0.0}
        m = metrics(
            curve["ts"].to_numpy(),
            curve["equity"].to_numpy(),
            book,
            curve["gross_exposure"].to_numpy(),
            n_trials=n_trials,
        )
        return curve, m

    ev = evaluate_trades(trades, price)
    start, end = pd.Timestamp(ev["date"].min()), pd.Timestamp(ev["date"].max())
    calls = evaluate_trades(always_on(price, "LONG", 7, sp, start, end), price)
    puts = evaluate_trades(always_on(price, "PRIMARY_SHORT", 7, sp, start, end), price)
    eq, m = account(ev, N_TRIALS["options_desk"])
    done = ev[ev["option_ret"].notna()]
    last = pd.Timestamp(eq["ts"].max() - DAY_MS, unit="ms") if len(eq) else end  # the account curve's last day
    bh = price[(price.index >= start) & (price.index <= last)].dropna()
    bh_ts = bh.index.astype("datetime64[ms]").astype("int64").to_numpy() + DAY_MS  # a day's price is known at its end
    metrics_ = {
        **m,
        "n_trades": float(len(done)),
        "n_without_outcome": float(len(ev) - len(done)),
        "option_hit_rate": float(done["hit"].mean()),
        "direction_hit_rate": float(done["direction_hit"].mean()),
        "avg_option_ret": float(done["option_ret"].mean()),
    }
    bench = {
        "buy_and_hold": metrics(bh_ts, bh.to_numpy()),
        "always_on_calls": {
            **account(calls)[1],
            "n_trades": float(calls["option_ret"].notna().sum()),
            "option_hit_rate": float(calls["hit"].mean()),
            "direction_hit_rate": float(calls["direction_hit"].mean()),
        },
        "always_on_puts": {
            **account(puts)[1],
            "n_trades": float(puts["option_ret"].notna().sum()),
            "option_hit_rate": float(puts["hit"].mean()),
            "direction_hit_rate": float(puts["direction_hit"].mean()),
        },
    }
    return {
        "ev": ev,
        "equity": eq,
        "metrics": metrics_,
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
