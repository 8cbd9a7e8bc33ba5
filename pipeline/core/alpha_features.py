"""Alpha portfolio (seed 004): the 13 features per asset and hour, the market regime, the fallback score and the
combination of the 6h / 24h predictions into a cost-adjusted expected return (pure, point-in-time).

**Features** (:func:`alpha_features`, one symbol's 1h candles sorted by ``ts``; every value at ``t`` uses candles
``<= t`` only; NaN during warm-up). TA-Lib through :func:`pipeline.core.indicators.technical_features` where it fits:

| column | formula | unit |
|---|---|---|
| ``ret_1h``, ``ret_3h``, ``ret_6h``, ``ret_24h`` | ``close_t / close_{t-k} - 1``, ``k`` = 1, 3, 6, 24 bars | fraction |
| ``ema_z_fast`` | ``(close - EMA(close, 20)) / STDDEV(close, 20)`` (TA-Lib EMA, population std) | z |
| ``ema_z_slow`` | ``(close - EMA(close, 50)) / STDDEV(close, 50)`` | z |
| ``rsi_14`` | TA-Lib ``RSI(close, 14)`` (Wilder) | 0-100 |
| ``bb_pos`` | ``(close - lower) / (upper - lower)`` of TA-Lib ``BBANDS(close, 20, 2, 2, SMA)`` (0 = lower band) | ratio |
| ``rvol_24h`` | sample std of 1h log returns over 24 bars (``indicators.realized_vol_24``) | fraction / hour |
| ``atr_14`` | TA-Lib ``ATR(high, low, close, 14)`` | quote currency |
| ``atr_pct`` | ``atr_14 / close`` (NATR as a fraction) | fraction |
| ``dd_peak`` | ``close / max(close over the last dd_window bars, current included) - 1`` (``<= 0``) | fraction |
| ``tier`` | the asset's tier (1, 2, 3) from ``alpha_portfolio.tiers`` | integer |

``close`` is stored beside them. The thirteen are :data:`FEATURES` (the model inputs).

**Market regime** (:func:`market_regime`, on the BTC clock): ``raw`` = ``down`` when BTC's close is below its
``EMA(close, slow)`` **and** ``EMA(fast) < EMA(slow)`` **and** breadth ``<= breadth_down``; ``trend`` when close
``>`` EMA(slow) **and** EMA(fast) ``>`` EMA(slow) **and** breadth ``>= breadth_trend``; otherwise ``chop``.
Breadth = share of the universe's assets with a bar at ``t`` whose close is above their own ``EMA(close, slow)``.
Hysteresis (:func:`hysteresis`): the regime switches to a new raw state only after it has held ``confirm_bars``
consecutive bars **and** the current regime has lasted ``min_dwell_bars`` bars.

**Scores**: :func:`combine_scores` turns the predicted forward vol-normalised returns ``pred_h`` (units of
``rvol_24h · sqrt(h)``) into returns ``r_h = pred_h · rvol_24h · sqrt(h)`` and blends them with the regime's weight
``w6`` (``exp_ret = w6 · r_6 + (1 - w6) · r_24``), then subtracts the planned trade's round-trip cost from
:meth:`pipeline.core.costs.Costs.round_trip_pct`. :func:`fallback_predictions` is the seed's "simple fallback"
used when no champion model exists.
"""

from __future__ import annotations

from typing import Literal

import numba
import numpy as np
import pandas as pd
import talib
from pydantic import Field

from pipeline.core.costs import CostMode, Costs
from pipeline.core.indicators import technical_features
from pipeline.core.params import Params

FEATURES = [
    "ret_1h",
    "ret_3h",
    "ret_6h",
    "ret_24h",
    "ema_z_fast",
    "ema_z_slow",
    "rsi_14",
    "bb_pos",
    "rvol_24h",
    "atr_14",
    "atr_pct",
    "dd_peak",
    "tier",
]
FEATURE_TABLE_COLUMNS = [*FEATURES, "close"]
REGIMES = ("trend", "chop", "down")
REGIME_COLUMNS = ["raw_regime", "btc_close", "btc_ema_fast", "btc_ema_slow", "breadth", "n_assets", "regime_age_bars"]
_CODE = {"down": 0, "chop": 1, "trend": 2}


class AlphaFeatureParams(Params):
    """``alpha_portfolio.features``: the feature windows that are not fixed by TA-Lib's conventions."""

    dd_window: int = Field(720, ge=2, description="Bars of the running peak of dd_peak (720 = 30 days of 1h bars).")


class AlphaRegimeParams(Params):
    """``alpha_portfolio.regime``: the market regime rule on BTC and breadth, and its hysteresis."""

    symbol: str = Field("BTC/USDT", description="The market's clock and trend asset.")
    ema_fast: int = Field(50, ge=2, description="Fast EMA of BTC's close, bars.")
    ema_slow: int = Field(200, ge=3, description="Slow EMA of BTC's close and of every asset's breadth test, bars.")
    breadth_trend: float = Field(0.6, ge=0, le=1, description="Breadth at least this (and BTC up) => raw 'trend'.")
    breadth_down: float = Field(0.4, ge=0, le=1, description="Breadth at most this (and BTC down) => raw 'down'.")
    confirm_bars: int = Field(24, ge=1, description="A new raw state must hold this many consecutive bars to switch.")
    min_dwell_bars: int = Field(72, ge=1, description="A regime lasts at least this many bars before it can switch.")


class AlphaScoreParams(Params):
    """``alpha_portfolio.score``: regime weights of the 6h prediction, costs of the planned trade and the fallback."""

    weight_6h: dict[str, float] = Field(
        default_factory=lambda: {"trend": 0.3, "chop": 0.6, "down": 0.5},
        description="Weight of the 6h prediction per regime (the 24h prediction gets 1 - weight).",
    )
    cost_mode: CostMode = Field(
        "taker", description="How the round trip is filled (pipeline.core.costs): taker = worst case."
    )
    fallback_momentum: float = Field(0.5, description="Fallback: weight of vol-normalised 24h momentum.")
    fallback_reversion: float = Field(0.5, description="Fallback: weight of the fast EMA z-score, sign reversed.")
    fallback_scale: float = Field(
        0.05, ge=0, description="Fallback: predicted vol-normalised return per unit of the fallback signal."
    )
    clip: float = Field(3.0, gt=0, description="Fallback: each signal component is clipped to +-clip.")


def alpha_features(ohlcv: pd.DataFrame, tier: int, params: AlphaFeatureParams = AlphaFeatureParams()) -> pd.DataFrame:
    """The 13 seed features of one symbol's candles (table in the module docstring).

    Args:
        ohlcv: ``ts`` (int64 epoch ms, ascending, unique), ``high, low, close, volume`` (float64).
        tier: the asset's tier (1, 2 or 3).

    Returns:
        ``ts`` plus :data:`FEATURE_TABLE_COLUMNS` (float64; ``tier`` int64), one row per input row.
    """
    tech = technical_features(ohlcv)
    c = ohlcv["close"].to_numpy(np.float64)
    out = {"ts": ohlcv["ts"].to_numpy(np.int64)}
    for k in (1, 3, 6, 24):
        r = np.full(len(c), np.nan)
        r[k:] = c[k:] / c[:-k] - 1.0
        out[f"ret_{k}h"] = r
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, n, ema in (("ema_z_fast", 20, "ema_20"), ("ema_z_slow", 50, "ema_50")):
            sd = talib.STDDEV(c, timeperiod=n, nbdev=1) if len(c) else np.zeros(0)
            z = (c - tech[ema].to_numpy()) / sd
            z[~(sd > 0)] = np.nan
            out[name] = z
        out["rsi_14"] = tech["rsi_14"].to_numpy()
        width = (tech["bb_upper"] - tech["bb_lower"]).to_numpy()
        pos = (c - tech["bb_lower"].to_numpy()) / width
        pos[~(width > 0)] = np.nan
        out["bb_pos"] = pos
        out["rvol_24h"] = tech["realized_vol_24"].to_numpy()
        out["atr_14"] = tech["atr_14"].to_numpy()
        out["atr_pct"] = out["atr_14"] / c
        peak = pd.Series(c).rolling(params.dd_window, min_periods=1).max().to_numpy()
        out["dd_peak"] = c / peak - 1.0
    out["tier"] = np.full(len(c), int(tier), np.int64)
    out["close"] = c
    return pd.DataFrame(out)


@numba.njit(cache=True)
def _hysteresis(raw, confirm, dwell):  # pragma: no cover - compiled
    n = raw.shape[0]
    out = np.full(n, -1, np.int64)
    age = np.zeros(n, np.int64)
    cur, run, cand, cand_run = -1, 0, -1, 0
    for i in range(n):
        r = raw[i]
        if r < 0:  # warm-up: no regime yet
            out[i] = cur
            age[i] = run
            continue
        if cur < 0:
            cur, run = r, 0
        cand_run = cand_run + 1 if r == cand else 1
        cand = r
        if r != cur and cand_run >= confirm and run >= dwell:
            cur, run = r, 0
        run += 1
        out[i] = cur
        age[i] = run
    return out, age


def hysteresis(raw: np.ndarray, confirm_bars: int, min_dwell_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """Regime codes with hysteresis from raw codes (int64 (n,), -1 = warm-up, else 0 down / 1 chop / 2 trend).

    The first valid raw code starts the regime. The regime becomes raw state ``s`` at bar ``i`` when ``raw`` has
    been ``s`` for ``confirm_bars`` consecutive bars ending at ``i`` and the current regime has lasted at least
    ``min_dwell_bars`` bars. Returns ``(codes, age_bars)``; ``age_bars`` counts the bars of the current regime
    (1 on the bar it starts). Point-in-time: bar ``i`` depends on ``raw[:i+1]`` only.
    """
    return _hysteresis(np.asarray(raw, np.int64), int(confirm_bars), int(min_dwell_bars))


def market_regime(closes: pd.DataFrame, params: AlphaRegimeParams = AlphaRegimeParams()) -> pd.DataFrame:
    """The market regime per hour (rule in the module docstring).

    Args:
        closes: wide frame, index ``ts`` (int64 epoch ms, ascending), one float64 column of closes per symbol
            (NaN where the symbol has no bar); must contain ``params.symbol``.

    Returns:
        One row per ``ts`` where BTC has a close: ``ts``, ``regime`` (``trend | chop | down``, None in warm-up),
        and :data:`REGIME_COLUMNS`.

    Raises:
        KeyError: ``params.symbol`` is not a column.
    """
    btc_col = closes[params.symbol]
    closes = closes[btc_col.notna()]
    ts = closes.index.to_numpy(np.int64)
    btc = closes[params.symbol].to_numpy(np.float64)
    fast, slow = talib.EMA(btc, params.ema_fast), talib.EMA(btc, params.ema_slow)
    above = np.zeros(len(ts))
    n = np.zeros(len(ts))
    for s in closes.columns:  # each asset's own EMA over its own bars (gaps are not filled)
        col = closes[s].dropna()
        ema = talib.EMA(col.to_numpy(np.float64), params.ema_slow)
        ok = pd.Series(~np.isnan(ema), index=col.index).reindex(closes.index, fill_value=False).to_numpy()
        up = pd.Series(col.to_numpy() > ema, index=col.index).reindex(closes.index, fill_value=False).to_numpy()
        above += up & ok
        n += ok
    with np.errstate(divide="ignore", invalid="ignore"):
        breadth = np.where(n > 0, above / n, np.nan)
    valid = ~(np.isnan(fast) | np.isnan(slow) | np.isnan(breadth))
    bull = (btc > slow) & (fast > slow) & (breadth >= params.breadth_trend)
    bear = (btc < slow) & (fast < slow) & (breadth <= params.breadth_down)
    raw = np.where(~valid, -1, np.where(bear, 0, np.where(bull, 2, 1))).astype(np.int64)
    codes, age = hysteresis(raw, params.confirm_bars, params.min_dwell_bars)
    names = np.array(["down", "chop", "trend"], dtype=object)
    label = lambda c: np.where(c >= 0, names[np.clip(c, 0, 2)], None)  # noqa: E731
    return pd.DataFrame(
        {
            "ts": ts,
            "regime": label(codes),
            "raw_regime": label(raw),
            "btc_close": btc,
            "btc_ema_fast": fast,
            "btc_ema_slow": slow,
            "breadth": breadth,
            "n_assets": n.astype(np.int64),
            "regime_age_bars": np.where(codes >= 0, age, 0).astype(np.int64),
        }
    )


def regime_summary(regimes: pd.DataFrame) -> dict:
    """Share of hours per regime and switches per 30 days over the rows with a regime (for metadata / the report)."""
    r = regimes.dropna(subset=["regime"])
    if r.empty:
        return {"hours": 0, "flips": 0, "flips_per_month": float("nan")}
    flips = int((r["regime"].to_numpy()[1:] != r["regime"].to_numpy()[:-1]).sum())
    months = (int(r["ts"].iloc[-1]) - int(r["ts"].iloc[0])) / (30 * 86_400_000)
    share = r["regime"].value_counts(normalize=True)
    return {
        "hours": len(r),
        "flips": flips,
        "flips_per_month": flips / months if months > 0 else float("nan"),
        **{f"share_{k}": float(share.get(k, 0.0)) for k in REGIMES},
    }


def fallback_predictions(features: pd.DataFrame, params: AlphaScoreParams = AlphaScoreParams()) -> np.ndarray:
    """The seed's "simple fallback" as a predicted 24h vol-normalised return (float64 (n,), NaN where inputs are).

    ``signal = m · clip(ret_24h / (rvol_24h · sqrt(24)), ±clip) - r · clip(ema_z_fast, ±clip)`` (time-series
    momentum over a day, vol-normalised, plus mean reversion of the last hours' stretch from the fast EMA), and
    ``pred_24h = fallback_scale · signal``. Uses ``ret_24h, rvol_24h, ema_z_fast`` of the same row only.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mom = features["ret_24h"].to_numpy(np.float64) / (features["rvol_24h"].to_numpy(np.float64) * np.sqrt(24.0))
    rev = features["ema_z_fast"].to_numpy(np.float64)
    c = params.clip
    sig = params.fallback_momentum * np.clip(mom, -c, c) - params.fallback_reversion * np.clip(rev, -c, c)
    return params.fallback_scale * sig


def round_trip_cost(costs: Costs, mode: CostMode = "taker") -> float:
    """The planned trade's entry + exit cost as a fraction of notional (``costs.round_trip_pct(mode) / 100``)."""
    return costs.round_trip_pct(mode) / 100.0


def combine_scores(
    pred_6h: np.ndarray,
    pred_24h: np.ndarray,
    rvol_24h: np.ndarray,
    regime: np.ndarray,
    cost: float,
    params: AlphaScoreParams = AlphaScoreParams(),
    source: Literal["model", "fallback"] = "model",
) -> pd.DataFrame:
    """Expected return before and after costs from the two horizons' predictions (formula in the module docstring).

    Args:
        pred_6h, pred_24h: (n,) predicted forward vol-normalised returns (NaN allowed; for ``source='fallback'``
            ``pred_6h`` is ignored and the whole weight goes to ``pred_24h``).
        rvol_24h: (n,) realised volatility, fraction per hour.
        regime: (n,) ``trend | chop | down`` (None / unknown: the mean of the configured weights).
        cost: the planned round trip's cost, fraction of notional (:func:`round_trip_cost`).

    Returns:
        ``exp_ret``, ``cost``, ``exp_ret_net`` (fractions, float64, aligned with the inputs).
    """
    w_default = float(np.mean(list(params.weight_6h.values())))
    w6 = np.array([params.weight_6h.get(r, w_default) if isinstance(r, str) else w_default for r in regime])
    if source == "fallback":
        w6 = np.zeros(len(w6))
    vol = np.asarray(rvol_24h, np.float64)
    r6 = np.asarray(pred_6h, np.float64) * vol * np.sqrt(6.0)
    r24 = np.asarray(pred_24h, np.float64) * vol * np.sqrt(24.0)
    exp_ret = np.where(w6 > 0, w6 * r6, 0.0) + (1.0 - w6) * r24
    cost = np.full(len(exp_ret), float(cost))
    return pd.DataFrame({"exp_ret": exp_ret, "cost": cost, "exp_ret_net": exp_ret - cost})


SCORE_COLUMNS = [
    "exchange", "symbol", "ts", "regime", "pred_6h", "pred_24h", "exp_ret", "cost", "exp_ret_net", "rvol_24h",
    "atr_14", "close", "tier", "source", "model_version",
]  # fmt: skip


def score_rows(
    features: pd.DataFrame,
    regime: np.ndarray,
    pred_6h: np.ndarray | None,
    pred_24h: np.ndarray | None,
    cost: float,
    params: AlphaScoreParams = AlphaScoreParams(),
    model_version: str | None = None,
) -> pd.DataFrame:
    """The ``signals.alpha_scores`` rows of ``features`` (``symbol, ts`` + :data:`FEATURE_TABLE_COLUMNS`).

    A row is ``source = 'model'`` where both predictions are finite (``pred_*`` None = no champion), else
    ``'fallback'`` (:func:`fallback_predictions`; ``pred_6h`` / ``pred_24h`` NaN and ``model_version`` None).
    Returns :data:`SCORE_COLUMNS` except ``exchange``, one row per input row.
    """
    n = len(features)
    p6 = np.full(n, np.nan) if pred_6h is None else np.asarray(pred_6h, np.float64)
    p24 = np.full(n, np.nan) if pred_24h is None else np.asarray(pred_24h, np.float64)
    ok = np.isfinite(p6) & np.isfinite(p24)
    vol = features["rvol_24h"].to_numpy(np.float64)
    model = combine_scores(p6, p24, vol, regime, cost, params, "model")
    fb = combine_scores(
        np.full(n, np.nan), fallback_predictions(features, params), vol, regime, cost, params, "fallback"
    )
    return pd.DataFrame(
        {
            "symbol": features["symbol"].to_numpy(),
            "ts": features["ts"].to_numpy(np.int64),
            "regime": regime,
            "pred_6h": np.where(ok, p6, np.nan),
            "pred_24h": np.where(ok, p24, np.nan),
            **{k: np.where(ok, model[k].to_numpy(), fb[k].to_numpy()) for k in ("exp_ret", "cost", "exp_ret_net")},
            "rvol_24h": vol,
            "atr_14": features["atr_14"].to_numpy(np.float64),
            "close": features["close"].to_numpy(np.float64),
            "tier": features["tier"].to_numpy(np.int64),
            "source": np.where(ok, "model", "fallback"),
            "model_version": np.where(ok, model_version, None),
        }
    )
