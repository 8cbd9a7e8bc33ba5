"""The one metrics function: daily UTC closes point in time, quantstats on a real curve, hand-computed costs,
turnover, PSR and DSR (Bailey & López de Prado 2012/2014)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pipeline.core.metrics import EULER_GAMMA, daily_closes, metrics, sharpe_stats
from pipeline.core.simulator import SimParams, simulate
from tests.conftest import real_ohlcv

H, D = 3_600_000, 86_400_000


@pytest.fixture(scope="module")
def real_hourly_run():
    """A real hourly backtest: 400 days of Binance BTC/USDT 1h, SMA-cross entries, fixed SL/TP, time stop, costs."""
    a = real_ohlcv("BTC/USDT", "1h").iloc[-24 * 400 :].reset_index(drop=True)
    a["atr"] = (a["high"] - a["low"]).rolling(14).mean()
    sig = (a["close"] > a["close"].rolling(50).mean()).astype(int).diff().clip(lower=0).fillna(0).to_numpy()
    p = SimParams(
        init_cash=10_000, sl_pct=0.03, tp_pct=0.06, max_bars=48, fee_taker_bps=10, fee_maker_bps=10, slippage_bps=2
    )
    return simulate(a, sig, p)


def test_figures_equal_quantstats_on_the_daily_returns_of_a_real_hourly_curve(real_hourly_run):
    """Sharpe, Sortino, volatility, CAGR, max drawdown, Calmar and PSR equal quantstats' on the same daily returns
    with 365 periods a year. (The former per-bar ``performance`` annualised 8 760 hourly returns: it fails this.)"""
    import quantstats.stats as qs

    r = real_hourly_run
    ts, eq = r.bars["ts"].to_numpy(), r.bars["equity"].to_numpy()
    m = metrics(ts, eq, r.trades, known_after_ms=H)
    ret = daily_closes(ts, eq, H).pct_change().dropna()
    assert len(ret) == 400 and m["n_days"] == 401
    want = {
        "sharpe": qs.sharpe(ret, periods=365),
        "sortino": qs.sortino(ret, periods=365),
        "volatility": qs.volatility(ret, periods=365),
        "annual_return": qs.cagr(ret, periods=365),
        "total_return": qs.comp(ret),
        "max_drawdown": qs.max_drawdown(ret),
        "calmar": qs.calmar(ret, periods=365),
        "psr": qs.probabilistic_sharpe_ratio(ret, periods=365),
    }
    for k, v in want.items():
        assert m[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    # trades: the costs are the fees the simulator charged; gross adds them back
    assert m["costs"] == pytest.approx(r.trades["fees"].sum())
    assert m["n_trades"] == len(r.trades) and m["total_return_gross"] > m["total_return"] and m["cost_drag"] > 0
    assert m["breakeven_cost_bps"] == pytest.approx(
        (r.trades["pnl"].sum() + r.trades["fees"].sum())
        / (r.trades["notional"] + r.trades["units"] * r.trades["avg_exit_price"]).sum()
        * 1e4
    )


def test_daily_closes_are_point_in_time_and_everything_by_hand():
    # 12h bars; each equity is marked at its bar's close (known 12 h after ts)
    ts = np.arange(10, dtype=np.int64) * 12 * H
    eq = np.array([100.0, 101, 103, 99, 104, 110, 108, 112, 111, 115])
    d = daily_closes(ts, eq, known_after_ms=12 * H)
    assert list(d) == [100, 101, 99, 110, 112, 115]  # day 1 closes at 101: the bar opening at 24:00 is not known yet
    assert list(d.index.astype("int64")) == [0, D, 2 * D, 3 * D, 4 * D, 5 * D]
    assert list(daily_closes(ts, eq)) == [100, 103, 104, 108, 111]  # read as known at ts (the last 115 is after 96:00)
    trades = pd.DataFrame(
        {
            "entry_ts": [6 * H],
            "exit_ts": [30 * H],
            "notional": [50.0],
            "units": [0.5],
            "avg_exit_price": [104.0],
            "fees": [0.1],
            "pnl": [1.9],
            "ret": [0.038],
            "r_multiple": [0.5],
        }
    )
    gross = np.array([1.0] * 9 + [0.0])
    m = metrics(ts, eq, trades, gross, known_after_ms=12 * H, n_trials=10)
    r = np.array([101 / 100, 99 / 101, 110 / 99, 112 / 110, 115 / 112]) - 1
    assert m["total_return"] == pytest.approx(0.15) and m["years"] == 5 / 365
    assert m["annual_return"] == pytest.approx(1.15 ** (365 / 5) - 1)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(r[1] ** 2 / 5) * math.sqrt(365))
    assert m["max_drawdown"] == pytest.approx(99 / 101 - 1) and m["max_drawdown_days"] == 1
    assert m["exposure"] == pytest.approx(1.0)  # time-weighted: the last bar's 0 holds for no time
    # turnover (pyfolio, portfolio-value denominator): 50 traded on day 0 (counted at its close, day 1), 52 on day 1
    assert m["daily_turnover"] == pytest.approx(np.mean([50 / 101, 52 / 99, 0, 0, 0]))
    assert m["turnover"] == pytest.approx(365 * m["daily_turnover"])
    assert m["cost_bps"] == pytest.approx(0.1 / 102 * 1e4) and m["breakeven_cost_bps"] == pytest.approx(2 / 102 * 1e4)
    assert m["total_return_gross"] == pytest.approx(0.151)  # the fee is added back from its exit at 30:00 on
    assert m["cost_drag"] == pytest.approx(1.151 ** (365 / 5) - 1.15 ** (365 / 5))
    assert m["win_rate"] == 1.0 and m["expectancy"] == pytest.approx(1.9) and m["avg_r"] == 0.5
    # DSR by hand: SR0 from N = 10 trials of variance 1 / (n - 1), then the PSR at SR0
    sr = r.mean() / r.std(ddof=1)
    g3 = pd.Series(r).skew()
    g4 = pd.Series(r).kurt() + 3
    sigma = math.sqrt((1 - g3 * sr + (g4 - 1) / 4 * sr**2) / 4)
    sr0 = math.sqrt(1 / 4) * ((1 - EULER_GAMMA) * norm.ppf(0.9) + EULER_GAMMA * norm.ppf(1 - 1 / (10 * math.e)))
    assert m["psr"] == pytest.approx(norm.cdf(sr / sigma)) and m["dsr"] == pytest.approx(norm.cdf((sr - sr0) / sigma))
    assert m["dsr_sharpe0"] == pytest.approx(sr0 * math.sqrt(365)) and m["dsr"] < m["psr"] and m["n_trials"] == 10


def test_deflated_sharpe_threshold_is_the_expected_maximum_of_unskilled_trials():
    """SR0 is the expected maximum Sharpe of N zero-skill trials (Bailey & López de Prado 2014, eq. 2): simulated."""
    rng = np.random.default_rng(7)
    n, trials = 250, 100
    r = rng.normal(0, 0.01, (400, trials, n))
    sr = r.mean(axis=2) / r.std(axis=2, ddof=1)
    s = sharpe_stats(rng.normal(0, 0.01, n), n_trials=trials)
    assert s["dsr_sharpe0"] / math.sqrt(365) == pytest.approx(sr.max(axis=1).mean(), rel=0.05)
    one = sharpe_stats(r[0, 0], n_trials=1)
    assert one["dsr"] == one["psr"] and one["dsr_sharpe0"] == 0.0
    with pytest.raises(ValueError):
        sharpe_stats(r[0, 0], n_trials=0)
