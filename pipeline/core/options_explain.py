"""Why the options desk says what it says (pure): how old its latest day is, which feature values each indicator
regime was read from, why an indicator is ``unavailable``, and how many recent calendar days were usable.

Used by ``trader options score-latest`` / ``generate-signal`` (seed 000 "Commands" and "Sample Output") and the
``recent_days_available`` asset check. The inputs per regime follow :mod:`pipeline.core.onchain_signals` (module
docstring: primary metric, documented proxy, the trailing z-scores and the 30-day changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class SourceInputs:
    """One way of computing an indicator's regime: the ``features.onchain`` columns it is read from.

    ``base``: the series that must have a value on the day and ``lookback`` days before (the change the regime reads);
    ``shown``: the feature values printed for the day (base series, changes, the z-score the thresholds apply to).
    """

    source: str
    base: tuple[str, ...]
    lookback: int
    shown: tuple[str, ...]


#: per indicator (as named in ``state_reason = unavailable:<indicator>``): its regime/source columns and the ways of
#: computing it, primary first (``<indicator>_source`` values of :func:`pipeline.core.onchain_signals.onchain_features`)
REGIME_INPUTS: dict[str, tuple[str, tuple[SourceInputs, ...]]] = {
    "mdia": (
        "mdia",
        (
            SourceInputs(
                "proxy:realized_cap_age",
                ("mdia_days",),
                30,
                ("mdia_days", "mdia_chg_30d", "mdia_drift_adj_30d", "mdia_chg_30d_z"),
            ),
        ),
    ),
    "whales": (
        "whale",
        (
            SourceInputs(
                "primary:whale_address_counts",
                ("whale_addr_1k", "whale_addr_10k"),
                30,
                ("whale_addr_1k", "whale_addr_10k", "whale_addr_1k_chg_30d", "whale_addr_10k_chg_30d"),
            ),
            SourceInputs(
                "proxy:exchange_supply",
                ("exchange_supply_btc",),
                30,
                ("exchange_supply_btc", "exchange_supply_chg_30d"),
            ),
        ),
    ),
    "mvrv_ls": (
        "mvrv_ls",
        (
            SourceInputs(
                "primary:glassnode_lth_sth", ("mvrv_ls_primary",), 14, ("mvrv_ls_primary", "mvrv_ls_z_primary")
            ),
            SourceInputs(
                "proxy:mvrv_minus_sth155",
                ("mvrv", "sth_mvrv_proxy"),
                14,
                ("mvrv", "sth_mvrv_proxy", "mvrv_ls_proxy", "mvrv_ls_z_proxy", "mvrv_ls_slope_proxy"),
            ),
        ),
    ),
}

#: the features the overlays read (seed "Overlays": sentiment and MVRV composite for longs, MVRV-60d for shorts)
OVERLAY_INPUTS = (
    "fng_value",
    "fng_chg_7d",
    "euphoria_days_7",
    "mvrv_composite",
    "mvrv_chg_14d",
    "mvrv_60d_pct_rank",
    "mvrv_60d_dist_from_max",
)


def days_behind(last_day, today) -> int:
    """Whole days from the latest stored day to ``today`` (both dates; UTC). Day D's on-chain row is complete at
    D+1 00:00 UTC, so 1 is as fresh as the data can be."""
    return int((pd.Timestamp(today).normalize() - pd.Timestamp(last_day).normalize()).days)


def _last_value(s: pd.Series, dates: pd.Series, day: pd.Timestamp) -> str:
    ok = s.notna() & (dates <= day)
    return str(dates[ok].max().date()) if ok.any() else "never"


def unavailable_reason(features: pd.DataFrame, day, indicator: str) -> str:
    """Why ``indicator`` (``mdia``, ``whales``, ``mvrv_ls``) has no regime on ``day``: for each source, the first of its
    base series that has no value on the day or ``lookback`` days before (with that series' last value on or before
    the missing date), or, when all have values, that the trailing window is not yet filled.

    Args:
        features: ``features.onchain`` rows (``date`` datetime64 or date; one row per calendar day) up to at least
            ``day``; only the columns named in :data:`REGIME_INPUTS` are read (a missing column reads as empty).

    Raises:
        KeyError: unknown ``indicator``.
    """
    _, sources = REGIME_INPUTS[indicator]
    dates = pd.to_datetime(features["date"])
    day = pd.Timestamp(day)
    by_date = features.assign(date=dates).set_index("date")
    parts = []
    for src in sources:
        why = None
        for col in src.base:
            s = by_date[col] if col in by_date else pd.Series(float("nan"), index=by_date.index)
            for when, label in (
                (day, "on the day"),
                (day - pd.Timedelta(days=src.lookback), f"{src.lookback} days before"),
            ):
                v = s.get(when)
                if v is None or pd.isna(v):
                    last = _last_value(s.reset_index(drop=True), dates.reset_index(drop=True), when)
                    why = f"{col} has no value {label} ({when.date()}; last value {last})"
                    break
            if why:
                break
        parts.append(f"{src.source}: {why or 'inputs present but the trailing z-score window is not yet filled'}")
    return f"{indicator} unavailable — " + "; ".join(parts)


def regime_inputs(features_row: pd.Series, daily_row: pd.Series) -> list[tuple[str, str, list[tuple[str, float]]]]:
    """The feature values behind each regime of one day: ``[(indicator, "<regime> (<source used>)", [(source, ...)])]``.

    Returns per indicator a header and, for every source (the one used first), ``(column, value)`` pairs of its
    :attr:`SourceInputs.shown` columns (NaN where the day has none); the source label is suffixed ``(used)`` or
    ``(not used)``.
    """
    out = []
    for ind, (prefix, sources) in REGIME_INPUTS.items():
        used = daily_row.get(f"{prefix}_source")
        header = f"{daily_row.get(f'{prefix}_regime')} ({used})"
        values = []
        for src in sorted(sources, key=lambda s: s.source != used):
            tag = "used" if src.source == used else "not used"
            values.append((f"{src.source} ({tag})", [(c, features_row.get(c, float("nan"))) for c in src.shown]))
        out.append((ind, header, values))
    return out


def recent_availability(daily: pd.DataFrame, days: int = 90) -> tuple[float, pd.DataFrame, dict]:
    """Share of the last ``days`` **calendar** days (ending at the latest stored day) without a usable signal.

    A day counts as unavailable when its ``state_reason`` starts with ``unavailable`` or when it has no row at all (a
    gap in the data). Args: ``daily``: ``signals.options_daily`` rows (``date``, ``state_reason``).

    Returns:
        ``(share, reasons, window)``: share in [0, 1] (1.0 for an empty frame); ``reasons``: ``reason``, ``days``
        (``no row for the day`` for gaps); ``window``: ``first_day``, ``last_day`` (ISO dates), ``days_without_row``.
    """
    if daily.empty:
        return 1.0, pd.DataFrame({"reason": ["no rows"], "days": [days]}), {}
    d = pd.to_datetime(daily["date"])
    last = d.max().normalize()
    cal = pd.date_range(last - pd.Timedelta(days=days - 1), last, freq="D")
    reason = daily.assign(date=d).drop_duplicates("date", keep="last").set_index("date")["state_reason"]
    reason = reason.reindex(cal)
    missing = reason.isna()
    bad = missing | reason.fillna("").str.startswith(UNAVAILABLE)
    why = reason.where(~missing, "no row for the day")[bad]
    reasons = why.value_counts().rename_axis("reason").reset_index(name="days")
    window = {"first_day": str(cal[0].date()), "last_day": str(last.date()), "days_without_row": int(missing.sum())}
    return float(bad.mean()), reasons, window
