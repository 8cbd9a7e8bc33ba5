"""Options desk decision engine: fusion score, conviction and confidence, market state, overlays, tactical puts,
option structures and cooldowns (pure). Follows ``shared/seeds/000_a14e0256b66504ec.txt`` table by table.

Inputs are per-day indicator regimes (strings) and overlay inputs; every function is vectorised over
days (numpy ``select`` on arrays), and a day whose indicator is ``"unavailable"`` is never treated as
neutral: its state is ``NO_TRADE`` with the reason ``unavailable:<indicator>``.

Choices where the seed is silent (also in ``docs/decisions.md``):

* **Score** (stored column ``score``): the seed's indicator points summed, bull-positive, −6..+6, *without*
  conflicts (MDIA strong_inflow +2, inflow +1, distribution −1; whales broad_accum +2, strategic_accum +1,
  distribution −1, strong_distribution −2; MVRV-LS call_confirm_recovery +2, trend_confirm +1,
  distribution_warning −1, put_confirm −2).
* **Conflicts** (−1 each, column ``conflicts``): a pair of indicators pointing in opposite directions —
  MDIA {inflow, strong_inflow} vs {distribution}; whales {broad_accum, strategic_accum} vs
  {distribution, strong_distribution}; MVRV-LS {call_confirm_recovery, trend_confirm} vs
  {distribution_warning, put_confirm, bear}. Three pairs, so at most 3 conflicts.
* **Conviction** (column ``conviction``): the score read in the trade's direction minus the conflicts —
  ``score − conflicts`` for longs, ``−score − conflicts`` for shorts, ``|score| − conflicts`` on NO_TRADE days.
  A conflict therefore always *lowers* conviction, whichever the direction (the seed's "−1 per conflict" applied to
  a bull-positive score used to raise a short's confidence). **Confidence** comes from the conviction:
  ≥ 4 HIGH, 2–3 MEDIUM, < 2 LOW; the probe gates read it too: BULL_PROBE needs conviction ≥ +2, BEAR_PROBE
  needs the bear-signed conviction ≤ −2 (the seed's "≤ −2"), i.e. ``score + conflicts ≤ −2``.
* **Regime groups** used by the state rules: "MDIA inflow" = {inflow, strong_inflow}; "whale sponsored" =
  {broad_accum, strategic_accum}; "whale distrib" = {distribution, strong_distribution}; "MVRV call_confirm" =
  {call_confirm_recovery, trend_confirm} (MVRV-LS rising above its median); "MVRV recovery" and "MVRV improving" =
  every *rising* MVRV-LS regime {call_confirm_recovery, trend_confirm, improving} (crossed up and rising, above
  and rising, below and rising); "MVRV put OR bear" = {put_confirm, bear}. Reading "recovery" and "improving" as
  only part of the rising family left fully bullish days (``inflow + sponsored + trend_confirm``,
  ``strong_inflow + neutral/mixed + call_confirm_recovery``) in NO_TRADE.
* **Two bullish indicators, timing neutral**: ``MDIA neutral + whale sponsored + MVRV call_confirm`` (sponsorship
  and terrain without ignition) is a BULL_PROBE: the seed's defined-risk trade for partial alignment. With the
  rules above, every day with at least two bullish indicators and nothing bearish or rolling over has a long state.

The state hierarchy (first matching row wins; "sponsored" = broad_accum/strategic_accum, "distrib" =
distribution/strong_distribution, "rising" = call_confirm_recovery/trend_confirm/improving, "call_confirm" =
call_confirm_recovery/trend_confirm; "conv" = conviction, for BEAR_PROBE read bear-signed):

===================== ============== =============== ======================================= ===========
state                 MDIA           whales          MVRV-LS                                 gate
===================== ============== =============== ======================================= ===========
strong_bullish        strong_inflow  sponsored       call_confirm
early_recovery        inflow/strong  sponsored       rising ("recovery")
bear_continuation     not inflow     distrib         put_confirm, bear
distribution_risk     not strong     distrib         rollover, weak_down, distribution_warning
momentum_continuation inflow/strong  neutral, mixed  rising ("improving")
bull_probe            inflow/strong  sponsored       neutral                                 conv ≥ +2
bull_probe            neutral        sponsored       call_confirm                            conv ≥ +2
bear_probe            distribution   distrib         neutral                                 conv ≤ −2
no_trade              any other combination ("no alignment"), or a probe failing its gate
no_trade              an ``unavailable`` indicator (reason ``unavailable:<indicator>``)
===================== ============== =============== ======================================= ===========

Probe sizes stay in the seed's 0.35–0.60× band after overlays and the model gate (:func:`band_probe_sizes`);
tactical puts get their own confidence from their number of warning signs (:func:`tactical_puts`); strikes sit on a
grid whose step scales with spot (:func:`strike_step`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from pipeline.core.params import Params

UNAVAILABLE = "unavailable"
MDIA_REGIMES = ("strong_inflow", "inflow", "neutral", "distribution")
WHALE_REGIMES = ("broad_accum", "strategic_accum", "neutral", "mixed", "distribution", "strong_distribution")
MVRV_LS_REGIMES = (
    "call_confirm_recovery",
    "trend_confirm",
    "improving",
    "neutral",
    "rollover",
    "weak_down",
    "distribution_warning",
    "put_confirm",
    "bear",
)

#: seed "Step 1: Confidence Score Calculation"
SCORES = {
    "mdia": {"strong_inflow": 2, "inflow": 1, "distribution": -1},
    "whales": {"broad_accum": 2, "strategic_accum": 1, "strong_distribution": -2, "distribution": -1},
    "mvrv_ls": {"call_confirm_recovery": 2, "trend_confirm": 1, "put_confirm": -2, "distribution_warning": -1},
}
_BULL = {
    "mdia": {"inflow", "strong_inflow"},
    "whales": {"broad_accum", "strategic_accum"},
    "mvrv_ls": {"call_confirm_recovery", "trend_confirm"},
}
_BEAR = {
    "mdia": {"distribution"},
    "whales": {"distribution", "strong_distribution"},
    "mvrv_ls": {"distribution_warning", "put_confirm", "bear"},
}
#: the regime groups of the state rules (module docstring)
MVRV_CALL_CONFIRM = ("call_confirm_recovery", "trend_confirm")
MVRV_RISING = ("call_confirm_recovery", "trend_confirm", "improving")

#: the 8 states in the seed's evaluation order (most specific first), then their trade
STATES = (
    "strong_bullish",
    "early_recovery",
    "bear_continuation",
    "distribution_risk",
    "momentum_continuation",
    "bull_probe",
    "bear_probe",
    "no_trade",
)
STATE_TRADE = {
    "strong_bullish": "LONG",
    "early_recovery": "LONG",
    "momentum_continuation": "LONG",
    "bull_probe": "BULL_PROBE",
    "distribution_risk": "PRIMARY_SHORT",
    "bear_continuation": "PRIMARY_SHORT",
    "bear_probe": "BEAR_PROBE",
    "no_trade": None,
}
TRADE_DIRECTION = {"LONG": 1, "BULL_PROBE": 1, "PRIMARY_SHORT": -1, "BEAR_PROBE": -1, "TACTICAL_PUT": -1}
TRADE_STRUCTURE = {
    "LONG": "LONG_CALL",
    "BULL_PROBE": "CALL_SPREAD",
    "PRIMARY_SHORT": "LONG_PUT",
    "BEAR_PROBE": "PUT_SPREAD",
    "TACTICAL_PUT": "TACTICAL_PUT",
}
PROBES = ("BULL_PROBE", "BEAR_PROBE")


class FusionParams(Params):
    """Thresholds of the seed's tables (defaults = the seed's values). Scores here are *convictions*: points in the
    trade's direction minus conflicts (module docstring)."""

    high_min_score: int = Field(4, description="Conviction >= this: HIGH confidence (full size).")
    medium_min_score: int = Field(2, description="Conviction >= this: MEDIUM confidence.")
    bull_probe_min_score: int = Field(2, description="BULL_PROBE needs conviction (score - conflicts) >= this.")
    bear_probe_max_score: int = Field(
        -2, description="BEAR_PROBE needs the bear-signed conviction (score + conflicts) <= this."
    )
    size_by_confidence: dict[str, float] = Field(
        default_factory=lambda: {"high": 1.0, "medium": 1.0, "low": 0.5},
        description="Base size of full trades by confidence (LOW = reduced).",
    )
    probe_size_by_confidence: dict[str, float] = Field(
        default_factory=lambda: {"high": 0.6, "medium": 0.5, "low": 0.35},
        description="Probe sizes within the seed's 0.35-0.60x.",
    )
    probe_size_band: tuple[float, float] = Field(
        (0.35, 0.60),
        description="The seed's probe band (fraction of a full position): a probe's size after overlays and the "
        "model gate is clipped into it.",
    )
    probe_below_band: str = Field(
        "floor",
        pattern="^(floor|skip)$",
        description="A probe that a moderate/soft veto (or the model gate's scale) would push below the band: "
        "'floor' trades it at the band's minimum, 'skip' does not trade it. Strong/hard vetoes always stop it.",
    )

    @model_validator(mode="after")
    def _band(self):
        lo, hi = self.probe_size_band
        if not 0 < lo <= hi:
            raise ValueError(f"probe_size_band must satisfy 0 < low <= high, got {self.probe_size_band}")
        bad = {k: v for k, v in self.probe_size_by_confidence.items() if not lo <= v <= hi}
        if bad:
            raise ValueError(f"probe_size_by_confidence outside probe_size_band {self.probe_size_band}: {bad}")
        return self


def _isin(a: np.ndarray, values) -> np.ndarray:
    return np.isin(a, list(values))


def fusion_score(mdia, whales, mvrv_ls) -> tuple[np.ndarray, np.ndarray]:
    """Seed indicator score per day and the number of conflicts (seed "Step 1").

    Args:
        mdia, whales, mvrv_ls: array-likes of regime strings (n,).

    Returns:
        ``(score, conflicts)`` int64 arrays (n,): ``score`` = sum of the indicator points, bull-positive (−6..+6),
        conflicts *not* included; ``conflicts`` = pairs pointing in opposite directions (0..3). The conflicts enter
        through :func:`conviction`.
    """
    regs = {
        "mdia": np.asarray(mdia, object),
        "whales": np.asarray(whales, object),
        "mvrv_ls": np.asarray(mvrv_ls, object),
    }
    score = np.zeros(len(regs["mdia"]), np.int64)
    for k, table in SCORES.items():
        score += np.array([table.get(x, 0) for x in regs[k]], np.int64) if len(regs[k]) else 0
    sign = {k: _isin(v, _BULL[k]).astype(int) - _isin(v, _BEAR[k]).astype(int) for k, v in regs.items()}
    conflicts = sum(
        ((sign[a] * sign[b]) < 0).astype(np.int64)
        for a, b in (("mdia", "whales"), ("mdia", "mvrv_ls"), ("whales", "mvrv_ls"))
    )
    return score, np.asarray(conflicts, np.int64)


def conviction(score, conflicts, direction) -> np.ndarray:
    """Points in the trade's direction minus conflicts (int64, n): ``d·score − conflicts`` for ``d`` = ±1 and
    ``|score| − conflicts`` for ``d`` = 0, so each conflict lowers conviction whichever the direction."""
    s, c, d = (np.asarray(x, np.int64) for x in (score, conflicts, direction))
    return np.where(d > 0, s, np.where(d < 0, -s, np.abs(s))) - c


def confidence(conv, p: FusionParams) -> np.ndarray:
    """HIGH / MEDIUM / LOW (object array) from the conviction (:func:`conviction`): seed "Step 2" thresholds."""
    eff = np.asarray(conv, np.int64)
    return np.select([eff >= p.high_min_score, eff >= p.medium_min_score], ["high", "medium"], "low").astype(object)


def classify_state(mdia, whales, mvrv_ls, score, conflicts, p: FusionParams) -> tuple[np.ndarray, np.ndarray]:
    """The seed's 8-state hierarchy (first matching rule wins, table in the module docstring) and a reason per day.

    Args:
        mdia, whales, mvrv_ls: regime strings (n,); score, conflicts: :func:`fusion_score` outputs (n,).

    Returns:
        ``(state, reason)`` object arrays (n,). Days with an ``unavailable`` indicator are ``no_trade`` with
        ``reason = "unavailable:<indicator>"``; a probe failing its conviction gate is ``no_trade`` with the gate named.
    """
    m, w, v = (np.asarray(x, object) for x in (mdia, whales, mvrv_ls))
    s, c = np.asarray(score, np.int64), np.asarray(conflicts, np.int64)
    inflow, strong = _isin(m, {"inflow", "strong_inflow"}), m == "strong_inflow"
    sponsored, distrib = _isin(w, {"broad_accum", "strategic_accum"}), _isin(w, {"distribution", "strong_distribution"})
    rising, call_confirm = _isin(v, MVRV_RISING), _isin(v, MVRV_CALL_CONFIRM)
    rules = [
        (
            strong & sponsored & call_confirm,
            "strong_bullish",
            "MDIA strong_inflow + whale sponsored + MVRV call_confirm",
        ),
        (inflow & sponsored & rising, "early_recovery", "MDIA inflow + whale sponsored + MVRV recovery (rising)"),
        (
            ~inflow & distrib & _isin(v, {"put_confirm", "bear"}),
            "bear_continuation",
            "MDIA not inflow + whale distrib + MVRV put/bear",
        ),
        (
            distrib & ~strong & _isin(v, {"rollover", "weak_down", "distribution_warning"}),
            "distribution_risk",
            "whale distrib + MDIA not strong + MVRV rollover/weak_down/warning",
        ),
        (
            inflow & _isin(w, {"neutral", "mixed"}) & rising,
            "momentum_continuation",
            "MDIA inflow + whale neutral/mixed + MVRV improving (rising)",
        ),
        (inflow & sponsored & (v == "neutral"), "bull_probe", "MDIA inflow + whale sponsored + MVRV neutral"),
        (
            (m == "neutral") & sponsored & call_confirm,
            "bull_probe",
            "MDIA neutral + whale sponsored + MVRV call_confirm",
        ),
        (
            (m == "distribution") & distrib & (v == "neutral"),
            "bear_probe",
            "MDIA distrib + whale distrib + MVRV neutral",
        ),
    ]
    state = np.select([r[0] for r in rules], [r[1] for r in rules], "no_trade").astype(object)
    reason = np.select([r[0] for r in rules], [r[2] for r in rules], "no alignment").astype(object)
    weak_bull = (state == "bull_probe") & (s - c < p.bull_probe_min_score)
    weak_bear = (state == "bear_probe") & (s + c > p.bear_probe_max_score)
    reason = np.where(weak_bull, f"bull_probe gated: conviction < {p.bull_probe_min_score}", reason)
    reason = np.where(weak_bear, f"bear_probe gated: score + conflicts > {p.bear_probe_max_score}", reason)
    state = np.where(weak_bull | weak_bear, "no_trade", state)
    missing = np.zeros(len(m), bool)
    for name, arr in (("mdia", m), ("whales", w), ("mvrv_ls", v)):
        un = (arr == UNAVAILABLE) | pd.isna(arr)
        reason = np.where(un & ~missing, f"unavailable:{name}", reason)
        missing |= un
    state = np.where(missing, "no_trade", state)
    return state.astype(object), reason.astype(object)


def fuse(days: pd.DataFrame, p: FusionParams | None = None) -> pd.DataFrame:
    """Score, conflicts, conviction, state, trade type, direction, confidence and base size for each day.

    Args:
        days: columns ``mdia_regime``, ``whale_regime``, ``mvrv_ls_regime`` (strings; ``unavailable`` allowed).

    Returns:
        Same index; ``score`` (Int64 indicator points, bull-positive, conflicts not included; NA when an indicator is
        unavailable), ``conflicts`` (int), ``conviction`` (Int64, :func:`conviction`; NA when unavailable),
        ``state``, ``state_reason``, ``trade_type`` (None for no_trade), ``direction`` (+1/−1/0), ``confidence``
        (from the conviction; None when unavailable), ``base_size`` (fraction of a full position).
    """
    p = p or FusionParams()
    m, w, v = (days[c].to_numpy(object) for c in ("mdia_regime", "whale_regime", "mvrv_ls_regime"))
    score, conflicts = fusion_score(m, w, v)
    state, reason = classify_state(m, w, v, score, conflicts, p)
    trade = np.array([STATE_TRADE[s] for s in state], object)
    direction = np.array([TRADE_DIRECTION.get(t, 0) if t else 0 for t in trade], np.int64)
    conv = conviction(score, conflicts, direction)
    conf = confidence(conv, p)
    probe = np.isin(trade, PROBES)
    size = np.where(
        trade == None,  # noqa: E711 - elementwise on an object array
        0.0,
        np.where(
            probe,
            [p.probe_size_by_confidence[c] for c in conf],
            [p.size_by_confidence[c] for c in conf],
        ),
    )
    unavailable = np.char.startswith(reason.astype(str), "unavailable")
    conf = np.where(unavailable, None, conf)
    out = pd.DataFrame(
        {
            "score": pd.array(np.where(unavailable, 0, score), dtype="Int64"),
            "conflicts": conflicts,
            "conviction": pd.array(np.where(unavailable, 0, conv), dtype="Int64"),
            "state": state,
            "state_reason": reason,
            "trade_type": trade,
            "direction": direction,
            "confidence": conf,
            "base_size": size.astype(float),
        },
        index=days.index,
    )
    out.loc[unavailable, ["score", "conviction"]] = pd.NA
    return out


def band_probe_sizes(trade_type, size, p: FusionParams) -> np.ndarray:
    """Probe sizes clipped into ``p.probe_size_band`` (seed: probes trade 0.35–0.60×); other trades unchanged.

    Args:
        trade_type: trade type per row (object, n); size: size after overlays / model gate (float, n).

    Returns:
        float array (n): a probe above the band gets its top; one below it gets the band's minimum
        (``probe_below_band = "floor"``) or 0 = not traded (``"skip"``); a size of 0 (strong/hard veto, model veto)
        stays 0.
    """
    t, s = np.asarray(trade_type, object), np.asarray(size, float)
    lo, hi = p.probe_size_band
    probe, on = _isin(t, PROBES), s > 0
    below = probe & on & (s < lo)
    out = np.where(probe & on, np.clip(s, lo, hi), s)
    return np.where(below & (p.probe_below_band == "skip"), 0.0, out)


# --- overlays (seed "Overlays (Execution Modifiers)") -------------------------------------------------


class OverlayParams(Params):
    """Overlay triggers. Long side: sentiment (Fear & Greed) + MVRV composite; short side: MVRV-60d only."""

    fear_max: float = Field(35, description="Fear & Greed at or below this is fear.")
    fear_stabilizing_days: int = Field(
        7, description="Fear is 'stabilizing' when F&G is not lower than this many days ago."
    )
    euphoria_min: float = Field(75, description="Fear & Greed at or above this is euphoria.")
    euphoria_persist_days: int = Field(5, description="Euphoria 'persisting': at least this many of the last 7 days.")
    mvrv_undervalued_pct: float = Field(0.30, description="MVRV composite percentile at or below this: undervalued.")
    mvrv_overvalued_pct: float = Field(0.80, description="MVRV composite percentile at or above this: overvalued.")
    long_full_size: float = 1.25
    long_full_dte: float = 1.50
    long_partial_size: float = 1.10
    long_moderate_veto_size: float = 0.50
    short_full: float = Field(0.85, description="Near-peak score >= this: short full edge.")
    short_partial: float = Field(0.75, description="Near-peak score >= this: short partial edge.")
    short_soft_veto: float = Field(0.35, description="Near-peak score <= this: soft veto.")
    short_hard_veto: float = Field(0.25, description="Near-peak score <= this: hard veto (no trade).")
    short_full_size: float = 1.15
    short_full_dte: float = 1.25
    short_partial_size: float = 1.05
    short_soft_veto_size: float = 0.50
    near_peak_weight: float = Field(0.5, description="Weight of mvrv_60d_pct_rank in the near-peak blend.")
    near_peak_dist_scale: float = Field(
        0.25, description="Distance from the 60d max (fraction) that scores 0 closeness."
    )


def near_peak_score(pct_rank, dist_from_max, o: OverlayParams) -> np.ndarray:
    """Blend of the MVRV 60-day percentile rank (0..1) and closeness to its 60-day max.

    ``dist_from_max`` = 1 − MVRV / max(MVRV over 60 d) (fraction ≥ 0); closeness = 1 − dist / scale, clipped to
    [0, 1]. Score = w · pct_rank + (1 − w) · closeness (NaN when an input is NaN).
    """
    close = np.clip(1.0 - np.asarray(dist_from_max, float) / o.near_peak_dist_scale, 0.0, 1.0)
    return o.near_peak_weight * np.asarray(pct_rank, float) + (1 - o.near_peak_weight) * close


def long_overlay(
    fear_stabilizing, mvrv_undervalued, euphoria_persisting, mvrv_overvalued_rollover, o: OverlayParams
) -> pd.DataFrame:
    """Long overlay per day with the seed's veto dominance.

    Candidates: full edge (+2: fear stabilizing AND MVRV undervalued), partial edge (+1: either), moderate veto
    (−1: euphoria persisting), strong veto (−2: euphoria persisting AND MVRV overvalued rollover). Resolution:
    (1) a strong veto always wins; (3) a full edge overrides a moderate veto; (2) a moderate veto beats a
    partial edge. Overlays scale size and DTE only, never direction.

    Returns:
        ``overlay`` (full_edge / partial_edge / moderate_veto / strong_veto / none), ``overlay_level`` (+2..−2),
        ``size_mult``, ``dte_mult``, ``overlay_reason``.
    """
    fs, uv, eu, ov = (
        np.asarray(x, bool) for x in (fear_stabilizing, mvrv_undervalued, euphoria_persisting, mvrv_overvalued_rollover)
    )
    strong, full, moderate, partial = eu & ov, fs & uv, eu, fs | uv
    return _overlay_frame(
        [strong, full, moderate, partial],
        [0.0, o.long_full_size, o.long_moderate_veto_size, o.long_partial_size],
        [1.0, o.long_full_dte, 1.0, 1.0],
        [
            "LONG VETO (STRONG): euphoria persisting + MVRV overvalued rolling over",
            "LONG EDGE (FULL): fear stabilizing + MVRV undervalued",
            "LONG VETO (MODERATE): euphoria persisting",
            np.where(fs, "LONG EDGE (PARTIAL): fear stabilizing", "LONG EDGE (PARTIAL): MVRV undervalued"),
        ],
        ["strong_veto", "full_edge", "moderate_veto", "partial_edge"],
    )


def _overlay_frame(conds, sizes, dtes, reasons, kinds) -> pd.DataFrame:
    """Overlay columns from rules in dominance order (first true wins): veto, full edge, soft veto, partial edge."""
    return pd.DataFrame(
        {
            "overlay": np.select(conds, kinds, "none"),
            "overlay_level": np.select(conds, [-2, 2, -1, 1], 0),
            "size_mult": np.select(conds, sizes, 1.0),
            "dte_mult": np.select(conds, dtes, 1.0),
            "overlay_reason": np.select(conds, reasons, "none"),
        }
    )


def short_overlay(score, o: OverlayParams) -> pd.DataFrame:
    """Short overlay from the near-peak score (seed bands 0.85 / 0.75 / 0.35 / 0.25); NaN score → none."""
    s = np.asarray(score, float)
    return _overlay_frame(
        [s <= o.short_hard_veto, s >= o.short_full, s <= o.short_soft_veto, s >= o.short_partial],
        [0.0, o.short_full_size, o.short_soft_veto_size, o.short_partial_size],
        [1.0, o.short_full_dte, 1.0, 1.0],
        [
            f"SHORT VETO (HARD): near-peak score <= {o.short_hard_veto}",
            f"SHORT EDGE (FULL): near-peak score >= {o.short_full}",
            f"SHORT VETO (SOFT): near-peak score <= {o.short_soft_veto}",
            f"SHORT EDGE (PARTIAL): near-peak score >= {o.short_partial}",
        ],
        ["hard_veto", "full_edge", "soft_veto", "partial_edge"],
    )


def cooldown(dates: pd.Series, trade_type: pd.Series, days_by_type: dict[str, int]) -> np.ndarray:
    """Collapse clustered events: an event is taken unless a taken event of the same type lies fewer than
    ``days_by_type[type]`` days before it (seed "Cooldown Settings"). Returns a bool array (taken).

    ``dates``: daily dates (datetime64), sorted; ``trade_type``: type or None per day.
    """
    d = pd.to_datetime(dates).to_numpy("datetime64[D]").astype(np.int64)
    t = trade_type.to_numpy(object)
    taken = np.zeros(len(d), bool)
    for typ, gap in days_by_type.items():
        idx = np.flatnonzero(t == typ)
        last = None
        for i in idx:  # events of one type only: a few hundred over the whole history
            if last is None or d[i] - last >= gap:
                taken[i] = True
                last = d[i]
    return taken


COOLDOWN_DAYS = {"LONG": 7, "PRIMARY_SHORT": 7, "TACTICAL_PUT": 7, "BULL_PROBE": 5, "BEAR_PROBE": 5}


# --- tactical puts and option structures --------------------------------------------------------------

BULL_STATES = ("strong_bullish", "early_recovery", "momentum_continuation", "bull_probe")


class TacticalPutParams(Params):
    """Hedge puts inside bull regimes (seed "TACTICAL_PUT: Put, 0.4-0.6x, hedge inside bull regimes")."""

    min_triggers: int = Field(1, description="Warning signs needed to hedge.")
    base_size: float = Field(0.4, description="Size with one warning sign.")
    step_size: float = Field(0.1, description="Extra size per additional warning sign.")
    max_size: float = Field(0.6, description="Size cap.")
    near_peak_min: float = Field(0.75, description="Near-peak score at or above this is a warning sign.")
    medium_min_signs: int = Field(2, ge=1, description="A hedge with at least this many warning signs is MEDIUM.")
    high_min_signs: int = Field(3, ge=1, description="A hedge with at least this many warning signs is HIGH.")


def tactical_puts(state, mvrv_ls, whales, near_peak, euphoria_persisting, tp: TacticalPutParams) -> pd.DataFrame:
    """A hedge put on a bull-state day with warning signs: MVRV-LS rollover/weak_down/distribution_warning,
    whale distribution, MVRV-60d near its peak (score ≥ ``near_peak_min``), euphoria persisting.

    Size = base + step × (signs − 1), capped (0.4 / 0.5 / 0.6 with the defaults). A hedge's confidence is its own,
    not the bull state's: the more warning signs, the more confident the hedge (defaults: 1 sign LOW, 2 MEDIUM,
    3–4 HIGH). Returns (n rows) ``tactical_put`` (bool), ``tactical_size`` (float), ``tactical_signs`` (int, warning
    signs that day, also on days without a hedge), ``tactical_confidence`` (high / medium / low; None without a
    hedge) and ``tactical_reason`` (the signs, "; "-joined; "" without a hedge).
    """
    st = np.asarray(state, object)
    signs = {
        "MVRV-LS rolling over": _isin(np.asarray(mvrv_ls, object), {"rollover", "weak_down", "distribution_warning"}),
        "whales distributing": _isin(np.asarray(whales, object), {"distribution", "strong_distribution"}),
        "MVRV-60d near peak": np.nan_to_num(np.asarray(near_peak, float), nan=0.0) >= tp.near_peak_min,
        "euphoria persisting": np.asarray(euphoria_persisting, bool),
    }
    n = sum(v.astype(int) for v in signs.values())
    on = _isin(st, BULL_STATES) & (n >= tp.min_triggers)
    size = np.where(on, np.minimum(tp.base_size + tp.step_size * (n - 1), tp.max_size), 0.0)
    conf = np.select([n >= tp.high_min_signs, n >= tp.medium_min_signs], ["high", "medium"], "low").astype(object)
    parts = [np.where(v, k + "; ", "") for k, v in signs.items()]
    joined = np.char.rstrip(
        np.char.add(np.char.add(parts[0], parts[1]), np.char.add(parts[2], parts[3])).astype(str), "; "
    )
    reason = np.where(on, joined, "").astype(object)
    return pd.DataFrame(
        {
            "tactical_put": on,
            "tactical_size": size,
            "tactical_signs": np.asarray(n, np.int64),
            "tactical_confidence": pd.Series(np.where(on, conf, None), dtype=object),
            "tactical_reason": reason,
        }
    )


class StructureParams(Params):
    """Strike moneyness (fraction of spot, + = above spot) and DTE per trade type; strikes on a price-scaled grid.

    The grid step follows listed BTC options (Deribit: 1,000 USD steps near 100,000 USD spot): the largest "nice"
    number (``strike_step_mantissas`` × a power of ten) not above ``strike_step_fraction`` × spot.
    """

    strike_step_fraction: float = Field(
        0.01, gt=0, le=0.05, description="Strike step at most this fraction of spot (0.01: 1,000 USD at 100,000 USD)."
    )
    strike_step_mantissas: tuple[float, ...] = Field(
        (1.0, 2.0, 2.5, 5.0),
        description="'Nice' step values before the power of ten (each in [1, 10); must include 1).",
    )
    long_call_moneyness: float = Field(0.05, gt=-0.5, lt=1.0)
    call_spread: tuple[float, float] = Field((0.0, 0.10), description="(bought, sold) call moneyness; sold > bought.")
    long_put_moneyness: float = Field(-0.05, gt=-0.5, lt=1.0)
    put_spread: tuple[float, float] = Field((0.0, -0.10), description="(bought, sold) put moneyness; sold < bought.")
    tactical_put_moneyness: float = Field(-0.08, gt=-0.5, lt=1.0)
    dte: dict[str, int] = Field(
        default_factory=lambda: {
            "LONG": 45,
            "BULL_PROBE": 30,
            "PRIMARY_SHORT": 30,
            "BEAR_PROBE": 30,
            "TACTICAL_PUT": 14,
        }
    )

    @model_validator(mode="after")
    def _legs(self):
        m = self.strike_step_mantissas
        if 1.0 not in m or not all(1.0 <= x < 10.0 for x in m):
            raise ValueError(f"strike_step_mantissas must include 1 and lie in [1, 10): {m}")
        (cl, cs), (pl, ps) = self.call_spread, self.put_spread
        if not cs > cl or not ps < pl:
            raise ValueError(
                f"a spread's sold leg must be further OTM: call_spread {self.call_spread}, put_spread {self.put_spread}"
            )
        if not all(-0.5 < x < 1.0 for x in (cl, cs, pl, ps)):
            raise ValueError("spread moneyness must lie in (-0.5, 1.0)")
        return self


def strike_step(spot, sp: StructureParams) -> np.ndarray:
    """Strike step (USD, float array like ``spot``) for each spot price: the largest ``mantissa × 10^k`` not above
    ``sp.strike_step_fraction × spot``. E.g. with the defaults 100 → 1, 150 → 1, 250 → 2.5, 6,000 → 50,
    64,000 → 500, 100,000 → 1,000, 200,000 → 2,000.

    Raises:
        ValueError: a spot that is not a positive finite number.
    """
    return _scaled(*_step_parts(spot, sp))


def _step_parts(spot, sp: StructureParams) -> tuple[np.ndarray, np.ndarray]:
    """``(mantissa, exponent)`` of :func:`strike_step`."""
    s = np.asarray(spot, float)
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError("strike_step needs positive finite spot prices")
    raw = sp.strike_step_fraction * s
    e = np.floor(np.log10(raw))
    mant = raw / _scaled(1.0, e) * (1 + 1e-9)  # 5.0 must not read as 4.999…
    nice = np.array(sorted(sp.strike_step_mantissas))
    return nice[np.searchsorted(nice, mant, side="right") - 1], e


def _scaled(k, e) -> np.ndarray:
    """``k × 10^e`` computed so that decimal strikes are the nearest doubles (k exact, divide by 10^−e when e < 0)."""
    k, e = np.asarray(k, float), np.asarray(e, float)
    return np.where(e >= 0, k * 10.0 ** np.maximum(e, 0), k / 10.0 ** np.maximum(-e, 0))


def strikes(spot, moneyness, sp: StructureParams, away_from=None, side: int = 0) -> np.ndarray:
    """Strikes (USD, float array) nearest to ``spot × (1 + moneyness)`` on the grid of :func:`strike_step`.

    Args:
        spot: spot prices (USD, > 0); moneyness: fraction of spot (scalar or array).
        away_from, side: for a spread's sold leg, the bought leg's strikes and the OTM side (+1 call, −1 put): a sold
            strike that rounds onto the bought one moves one step further OTM, so both legs stay distinct.

    Every strike lies within half a step (≤ 0.5 % of spot with the defaults) of its target, or within 1.5 steps for
    a sold leg moved off the bought leg. Raises ValueError on non-positive spot.
    """
    s = np.asarray(spot, float)
    unit, e = _step_parts(s, sp)
    step = _scaled(unit, e)
    n = np.round(s * (1 + np.asarray(moneyness, float)) / step)
    if away_from is not None:
        n_long = np.round(np.asarray(away_from, float) / step)
        n = np.where(n == n_long, n_long + side, n)
    return _scaled(n * unit, e)


def option_structure(trade_type: str, spot: float, date: pd.Timestamp, dte_mult: float, sp: StructureParams) -> dict:
    """Structure, strikes (USD, on the price-scaled grid of :func:`strike_step`) and expiry for one trade.

    Expiry = the first Friday on or after ``date + round(DTE × dte_mult)`` days (Deribit lists weekly Friday
    expiries at 08:00 UTC). ``strike_long`` is the bought leg; spreads also have ``strike_short``, always distinct
    from and further OTM than the bought leg. Raises ValueError on a non-positive spot.
    """
    legs = {
        "LONG": (sp.long_call_moneyness, None),
        "BULL_PROBE": sp.call_spread,
        "PRIMARY_SHORT": (sp.long_put_moneyness, None),
        "BEAR_PROBE": sp.put_spread,
        "TACTICAL_PUT": (sp.tactical_put_moneyness, None),
    }[trade_type]
    dte = int(round(sp.dte[trade_type] * dte_mult))
    target = pd.Timestamp(date).normalize() + pd.Timedelta(days=dte)
    expiry = target + pd.Timedelta(days=(4 - target.weekday()) % 7)
    k_long = float(strikes([spot], legs[0], sp)[0])
    side = 1 if trade_type == "BULL_PROBE" else -1
    k_short = None if legs[1] is None else float(strikes([spot], legs[1], sp, away_from=[k_long], side=side)[0])
    return {
        "structure": TRADE_STRUCTURE[trade_type],
        "strike_long": k_long,
        "strike_short": k_short,
        "expiry": expiry.date(),
        "dte": int((expiry - pd.Timestamp(date).normalize()).days),
    }


# --- model scores beside the fusion (seed: "ML MODEL SCORES") ---------------------------------------------


class ModelGateParams(Params):
    """How ``p_long`` / ``p_short`` affect a decision (the seed shows them beside the fusion state and is silent on
    their role, so the default only displays them).

    * ``display``: no effect.
    * ``veto``: a call-side event (LONG, BULL_PROBE) needs ``p_long >= min_p_long``, a put-side event
      (PRIMARY_SHORT, BEAR_PROBE, and TACTICAL_PUT when ``gate_tactical_puts``) needs ``p_short >= min_p_short``.
    * ``scale``: size × clip(p / min_p, ``scale_floor``, ``scale_cap``).

    Only scores of the promoted (``@champion``) model are used; a day without one follows ``when_missing``.
    """

    mode: str = Field("display", pattern="^(display|veto|scale)$")
    min_p_long: float = Field(0.5, ge=0, le=1)
    min_p_short: float = Field(0.5, ge=0, le=1)
    gate_tactical_puts: bool = False
    scale_floor: float = Field(0.5, ge=0)
    scale_cap: float = Field(1.5, ge=0)
    when_missing: str = Field(
        "allow",
        pattern="^(allow|block)$",
        description="No champion score that day: trade as the fusion says (allow) or not (block).",
    )


def model_gate(direction, trade_type, p_long, p_short, g: ModelGateParams) -> tuple[np.ndarray, np.ndarray]:
    """Size multiplier (0 = vetoed) and reason per event; arrays of equal length (p NaN = no champion score)."""
    direction, trade_type = np.asarray(direction), np.asarray(trade_type, dtype=object)
    p = np.where(direction > 0, np.asarray(p_long, float), np.asarray(p_short, float))
    floor = np.where(direction > 0, g.min_p_long, g.min_p_short)
    side = np.where(direction > 0, "p_long", "p_short")
    exempt = (trade_type == "TACTICAL_PUT") & (not g.gate_tactical_puts)
    n = len(direction)
    if g.mode == "display":
        return np.ones(n), np.full(n, "display only", dtype=object)
    missing = np.isnan(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        if g.mode == "veto":
            mult = np.where(p >= floor, 1.0, 0.0)
        else:
            mult = np.clip(p / floor, g.scale_floor, g.scale_cap)
    ptxt = np.char.mod("%.2f", np.nan_to_num(p)).astype(object)
    reason = np.where(
        mult == 0,
        side + " " + ptxt + " < " + np.char.mod("%.2f", floor).astype(object) + ": model veto",
        side
        + " "
        + ptxt
        + (": size x" + np.char.mod("%.2f", np.nan_to_num(mult)).astype(object) if g.mode == "scale" else ": passes"),
    )
    mult = np.where(missing, 1.0 if g.when_missing == "allow" else 0.0, mult)
    reason = np.where(missing, "no champion score: " + ("allowed" if g.when_missing == "allow" else "blocked"), reason)
    mult = np.where(exempt, 1.0, mult)
    reason = np.where(exempt, "tactical puts not gated", reason)
    return mult, reason


# --- one call: features -> daily signal rows and trade decisions ------------------------------------------


class OptionsDeskParams(Params):
    """Everything the desk's decisions depend on (``options_desk`` in trader.yaml)."""

    fusion: FusionParams = Field(default_factory=FusionParams)
    overlays: OverlayParams = Field(default_factory=OverlayParams)
    tactical_puts: TacticalPutParams = Field(default_factory=TacticalPutParams)
    structures: StructureParams = Field(default_factory=StructureParams)
    cooldown_days: dict[str, int] = Field(default_factory=lambda: dict(COOLDOWN_DAYS))
    model_gate: ModelGateParams = Field(default_factory=ModelGateParams)


def overlay_inputs(f: pd.DataFrame, o: OverlayParams) -> pd.DataFrame:
    """The overlay triggers from on-chain features (NaN inputs never trigger): ``fear_stabilizing``,
    ``mvrv_undervalued``, ``euphoria_persisting``, ``mvrv_overvalued_rollover``, ``near_peak``."""
    fng = f["fng_value"]  # one row per calendar day (onchain_features), so shifts and windows are in days
    chg = fng - fng.shift(o.fear_stabilizing_days)
    euphoria_days = (fng >= o.euphoria_min).astype(float).where(fng.notna()).rolling(7, min_periods=7).sum()
    comp = f["mvrv_composite"]
    return pd.DataFrame(
        {
            "fear_stabilizing": ((fng <= o.fear_max) & (chg >= 0)).to_numpy(),
            "mvrv_undervalued": (comp <= o.mvrv_undervalued_pct).to_numpy(),
            "euphoria_persisting": (euphoria_days >= o.euphoria_persist_days).to_numpy(),
            "mvrv_overvalued_rollover": ((comp >= o.mvrv_overvalued_pct) & (f["mvrv_chg_14d"] < 0)).to_numpy(),
            "near_peak": near_peak_score(f["mvrv_60d_pct_rank"], f["mvrv_60d_dist_from_max"], o),
        },
        index=f.index,
    )


def decide_days(
    f: pd.DataFrame, spot: pd.Series, p: OptionsDeskParams | None = None, scores: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily signal rows and trade decisions.

    Args:
        f: :func:`pipeline.core.onchain_signals.onchain_features` output (``date`` + features + regimes).
        spot: BTC price (USD) known at each day's decision time, aligned with ``f``.
        scores: champion model scores aligned with ``f`` (``p_long``, ``p_short``; NaN = none that day) for the
            :class:`ModelGateParams` gate; ``None`` = no scores at all.

    Returns:
        ``(daily, trades)``. ``daily``: date, regimes and sources, score, conflicts, conviction, confidence, state,
        reason, trade type, direction, overlay (kind, level, size and DTE multipliers, reason), final ``size``
        (probes held in ``fusion.probe_size_band``: :func:`band_probe_sizes`), tactical put (flag, size, warning
        signs, confidence, reason). ``trades``: one row per decision (fusion trade or tactical put) with structure,
        strikes, expiry/DTE, size, confidence (a tactical put's own, from its warning signs), reason and
        ``cooldown_status`` (``taken`` or ``cooldown``).
    """
    p = p or OptionsDeskParams()
    fz = fuse(f, p.fusion)
    ov_in = overlay_inputs(f, p.overlays)
    lo = long_overlay(
        ov_in["fear_stabilizing"],
        ov_in["mvrv_undervalued"],
        ov_in["euphoria_persisting"],
        ov_in["mvrv_overvalued_rollover"],
        p.overlays,
    ).set_index(f.index)
    so = short_overlay(ov_in["near_peak"], p.overlays).set_index(f.index)
    d = fz["direction"].to_numpy()
    ov = lo.where(pd.Series(d > 0, index=f.index), so.where(pd.Series(d < 0, index=f.index)))
    none = d == 0
    ov.loc[none, ["overlay", "overlay_reason"]] = "none"
    ov.loc[none, ["overlay_level"]] = 0
    ov.loc[none, ["size_mult", "dte_mult"]] = 1.0
    tp = tactical_puts(
        fz["state"],
        f["mvrv_ls_regime"],
        f["whale_regime"],
        ov_in["near_peak"],
        ov_in["euphoria_persisting"],
        p.tactical_puts,
    ).set_index(f.index)
    daily = pd.concat(
        [
            f[
                [
                    "date",
                    "mdia_regime",
                    "mdia_source",
                    "whale_regime",
                    "whale_source",
                    "mvrv_ls_regime",
                    "mvrv_ls_source",
                ]
            ],
            fz,
            ov,
            tp,
            ov_in["near_peak"],
        ],
        axis=1,
    )
    overlaid = daily["base_size"].to_numpy() * daily["size_mult"].to_numpy()
    daily["size"] = band_probe_sizes(daily["trade_type"], overlaid, p.fusion)
    banded = pd.Series(daily["size"].to_numpy() != overlaid, index=daily.index)
    daily["spot_usd"] = spot.to_numpy()
    vetoed = daily["trade_type"].notna() & (daily["size"] <= 0)
    events = daily.loc[
        daily["trade_type"].notna() & ~vetoed & daily["spot_usd"].notna(),
        ["date", "trade_type", "direction", "confidence", "size", "dte_mult", "state", "overlay_reason", "spot_usd"],
    ]
    band_lo, band_hi = p.fusion.probe_size_band
    events = events.assign(
        reason="Fusion: "
        + events["state"]
        + np.where(events["overlay_reason"] != "none", "; " + events["overlay_reason"], "")
        + np.where(banded[events.index], f"; probe size held in {band_lo:g}-{band_hi:g}", "")
    )
    hedges = daily.loc[
        daily["tactical_put"] & daily["spot_usd"].notna(),
        ["date", "tactical_confidence", "tactical_size", "spot_usd", "tactical_reason"],
    ]
    hedges = hedges.rename(columns={"tactical_size": "size", "tactical_confidence": "confidence"}).assign(
        trade_type="TACTICAL_PUT", direction=-1, dte_mult=1.0, reason="Tactical put: " + hedges["tactical_reason"]
    )
    ev = pd.concat([events, hedges]).sort_values(["date", "trade_type"], kind="stable")
    sc = scores if scores is not None else pd.DataFrame({"p_long": np.nan, "p_short": np.nan}, index=f.index)
    mult, why = model_gate(
        ev["direction"].to_numpy(),
        ev["trade_type"].to_numpy(),
        sc["p_long"].reindex(ev.index).to_numpy(),
        sc["p_short"].reindex(ev.index).to_numpy(),
        p.model_gate,
    )
    scaled = ev["size"].to_numpy() * mult
    gated = band_probe_sizes(ev["trade_type"], scaled, p.fusion)
    held = (gated != scaled) & ~ev["reason"].str.contains("probe size held").to_numpy()
    ev = ev.assign(
        size=gated,
        model_gate=why,
        reason=ev["reason"] + np.where(held, f"; probe size held in {band_lo:g}-{band_hi:g}", ""),
    )[gated > 0].reset_index(drop=True)
    if ev.empty:
        return daily, pd.DataFrame(
            columns=[
                "date",
                "trade_type",
                "direction",
                "structure",
                "strike_long",
                "strike_short",
                "expiry",
                "dte",
                "size",
                "confidence",
                "reason",
                "cooldown_status",
                "spot_usd",
                "model_gate",
            ]
        )
    taken = cooldown(ev["date"], ev["trade_type"], p.cooldown_days)
    legs = pd.DataFrame(
        [
            option_structure(t, s, dt, m, p.structures)
            for t, s, dt, m in zip(ev["trade_type"], ev["spot_usd"], ev["date"], ev["dte_mult"])
        ]
    )
    trades = pd.concat(
        [ev[["date", "trade_type", "direction"]], legs, ev[["size", "confidence", "reason", "spot_usd", "model_gate"]]],
        axis=1,
    )
    trades["cooldown_status"] = np.where(taken, "taken", "cooldown")
    return daily, trades
