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


# --------------------------------------------------------------------------- the daily decision block (seed 000)


def age_lines(day: str, last: str, available_at, today, max_age: int) -> list[str]:
    """How old the shown ``day`` and the latest stored day ``last`` are against ``today`` (UTC dates), with a
    ``STALE DATA`` warning past ``max_age`` days (``options_desk.max_data_age_days``); ``available_at``: when the
    latest day was complete (naive UTC), or None."""
    behind = days_behind(last, today)
    ready = (
        ""
        if available_at is None or pd.isna(available_at)
        else f"complete at {pd.Timestamp(available_at):%Y-%m-%d %H:%M} UTC, "
    )
    out = [
        f"Data: latest stored day {last} ({ready}{behind} day{'s' if behind != 1 else ''} behind today, "
        f"{pd.Timestamp(today).date()} UTC)"
    ]
    if day != last:
        out.append(f"      showing {day}, {days_behind(day, today)} days behind today (not the latest day)")
    if behind > max_age:
        out.append(
            f"⚠ STALE DATA: the latest on-chain day is {behind} days old (more than {max_age}); this is NOT today's "
            "signal. Refresh the on-chain files and run `trader options generate-signal` (or `trader run`)."
        )
    return out


def is_unavailable(r) -> bool:
    """The day's fusion state or one of its indicator regimes is ``unavailable`` (``r``: a ``signals.options_daily``
    row)."""
    return str(r["state_reason"]).startswith(UNAVAILABLE) or UNAVAILABLE in {
        r.get(f"{p}_regime") for p, _ in REGIME_INPUTS.values()
    }


def unavailable_lines(r, features: pd.DataFrame, day: str) -> list[str]:
    """One line per indicator without a regime on ``day``, saying which input is missing (empty if none)."""
    out = []
    for ind, (prefix, _) in REGIME_INPUTS.items():
        if r.get(f"{prefix}_regime") == UNAVAILABLE:
            out.append(f"   ⚠ {unavailable_reason(features, day, ind)}")
    return out


def model_lines(r, names: dict, thresholds: tuple[float, float], gate_default: str, candidates: dict) -> list[str]:
    """The seed's model block: champion scores, or the latest candidate's labelled as not promoted.

    ``r``: the ``signals.options_daily`` row; ``names``: ``{"p_long": model name, "p_short": ...}``;
    ``thresholds``: ``(call_threshold, put_threshold)``; ``candidates``: for a score without a champion value,
    ``{"p_long": (p_cal, model_version, promotion_reasons JSON) or None}`` (the latest candidate's score of the day).
    """
    import json

    out = []
    for t in ("p_long", "p_short"):
        p = r.get(t)
        if p is not None and pd.notna(p):
            out.append(f"{t:<7} = {p:.3f}   ({r[f'{t}_version']} @champion)")
            continue
        cand = candidates.get(t)
        if cand is None or pd.isna(cand[0]):
            out.append(f"{t:<7} = n/a   (no champion and no candidate score for this day; trader options train-models)")
        else:
            failed = [x for x in json.loads(cand[2] or "[]") if x.startswith("FAIL")]
            out.append(
                f"{t:<7} = {cand[0]:.3f}   (candidate {names[t]} v{cand[1]}, "
                f"NOT promoted: {'; '.join(failed) or 'gate not run'}; not used by decisions)"
            )
    for t, sig, thr in (
        ("p_long", "signal_option_call", thresholds[0]),
        ("p_short", "signal_option_put", thresholds[1]),
    ):
        v = r.get(sig)
        out.append(f"{sig:<18} = {'n/a' if v is None or pd.isna(v) else int(v)}   (champion {t} >= {thr})")
    out.append(f"model gate: {r.get('model_gate_mode', gate_default)}")
    return out


def strike_text(k: float) -> str:
    """A strike in USD without rounding it away: ``105,000``, ``64,500``, ``123.5``, ``0.0585`` (the grid scales
    with price, so early strikes are small)."""
    return f"{k:,.8g}"


def _day_text(v) -> str:
    t = pd.Timestamp(v)
    return str(t.date()) if t == t.normalize() else str(t)


def decision_block(
    r,
    trades: pd.DataFrame,
    *,
    age: list[str],
    models: list[str],
    unavailable: list[str] = (),
    inputs: list[str] = (),
) -> list[str]:
    """The options desk's daily block, as seed 000 "Sample Output" prints it (SIGNAL ANALYSIS, ML MODEL SCORES,
    FUSION STATE, OVERLAY, TRADE DECISIONS), shown by ``trader options score-latest`` and sent by the
    ``options_decision`` notification (:func:`pipeline.core.messages.options_decision`).

    Args:
        r: one ``signals.options_daily`` row (mapping / Series).
        trades: that day's ``signals.options_trades`` rows (``trade_type, direction, cooldown_status, reason,
            confidence, size, structure, strike_long, strike_short, expiry, dte``), in display order.
        age: :func:`age_lines`; models: :func:`model_lines`; unavailable: :func:`unavailable_lines` (when
            :func:`is_unavailable`); inputs: the ``--verbose`` indicator inputs (empty otherwise).
    Returns:
        The lines, without trailing newlines.
    """
    day = str(pd.Timestamp(r["date"]).date())
    bar = "=" * 60
    score = "n/a" if pd.isna(r["score"]) else f"{int(r['score']):+d}"
    lines = [
        bar,
        f"SIGNAL ANALYSIS: {day}",
        bar,
        *age,
        "",
        "--- ML MODEL SCORES ---",
        *models,
        "",
        "--- FUSION STATE ---",
        f"State: {r['state']}",
        f"   Confidence: {r['confidence'] if pd.notna(r['confidence']) else 'n/a'}",
        f"   Score: {score}",
        f"   Reason: {r['state_reason']}",
        f"   Regimes: MDIA {r['mdia_regime']} ({r['mdia_source']}), whales {r['whale_regime']} ({r['whale_source']}), "
        f"MVRV-LS {r['mvrv_ls_regime']} ({r['mvrv_ls_source']})",
        *unavailable,
        *inputs,
        "",
        "--- OVERLAY ---",
        f"   {r['overlay_reason']}",
        f"   Size Multiplier: {r['size_mult']:.2f}",
        f"   DTE Multiplier: {r['dte_mult']:.2f}",
        "",
        bar,
        "TRADE DECISIONS",
        bar,
    ]
    if trades.empty:
        lines += ["", "⚪ NO TRADE"]
    for t in trades.itertuples():
        icon = "✅" if t.cooldown_status == "taken" else "⏸"
        kind = "CALL" if t.direction > 0 else "PUT"
        strikes = strike_text(t.strike_long) + ("" if pd.isna(t.strike_short) else f" / {strike_text(t.strike_short)}")
        lines += [
            "",
            f"{icon} {kind} ({t.trade_type}, {t.cooldown_status})",
            f"   Reason: {t.reason}",
            f"   Confidence: {t.confidence}",
            f"   Size: {t.size:.2f}",
            f"   Structures: {t.structure}",
            f"   Strikes: {strikes}   Expiry: {_day_text(t.expiry)} ({t.dte} DTE)",
        ]
    return lines


def latest_block(inputs: dict, today, max_age: int, names: dict, thresholds: tuple[float, float]) -> list[str]:
    """The latest day's decision block (what ``trader options score-latest`` prints without ``--verbose``) from
    :func:`warehouse.readers.options_decision` ``inputs``; ``today``: UTC date; ``max_age``:
    ``options_desk.max_data_age_days``; ``names`` / ``thresholds``: as :func:`model_lines`."""
    r, day = inputs["row"], inputs["last"]
    return decision_block(
        r,
        inputs["trades"],
        age=age_lines(day, day, inputs["ready"], today, max_age),
        models=model_lines(r, names, thresholds, "display", inputs["candidates"]),
        unavailable=unavailable_lines(r, inputs["features"], day) if is_unavailable(r) else [],
    )
