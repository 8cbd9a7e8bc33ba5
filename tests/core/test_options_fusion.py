"""Truth tables for the options desk engine: every rule of the seed's score, confidence, state, overlay,
veto-dominance, tactical-put, structure and cooldown tables (shared/seeds/000_a14e0256b66504ec.txt)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline.core.options_fusion import (
    COOLDOWN_DAYS,
    MDIA_REGIMES,
    MVRV_LS_REGIMES,
    STATES,
    WHALE_REGIMES,
    FusionParams,
    OverlayParams,
    StructureParams,
    TacticalPutParams,
    cooldown,
    fuse,
    fusion_score,
    long_overlay,
    near_peak_score,
    option_structure,
    short_overlay,
    tactical_puts,
)


def one(m, w, v, p=None):
    return fuse(pd.DataFrame({"mdia_regime": [m], "whale_regime": [w], "mvrv_ls_regime": [v]}), p).iloc[0]


@pytest.mark.parametrize(
    "m,w,v,score",
    [
        ("strong_inflow", "neutral", "neutral", 2),
        ("inflow", "neutral", "neutral", 1),
        ("distribution", "neutral", "neutral", -1),
        ("neutral", "broad_accum", "neutral", 2),
        ("neutral", "strategic_accum", "neutral", 1),
        ("neutral", "strong_distribution", "neutral", -2),
        ("neutral", "distribution", "neutral", -1),
        ("neutral", "neutral", "call_confirm_recovery", 2),
        ("neutral", "neutral", "trend_confirm", 1),
        ("neutral", "neutral", "put_confirm", -2),
        ("neutral", "neutral", "distribution_warning", -1),
        ("neutral", "mixed", "improving", 0),
        ("neutral", "neutral", "bear", 0),
        ("strong_inflow", "broad_accum", "call_confirm_recovery", 6),  # seed's theoretical max
    ],
)
def test_score_table(m, w, v, score):
    assert one(m, w, v)["score"] == score and one(m, w, v)["conflicts"] == 0


@pytest.mark.parametrize(
    "m,w,v,conflicts,score",
    [
        ("inflow", "distribution", "neutral", 1, 1 - 1 - 1),  # MDIA vs whales
        ("distribution", "broad_accum", "neutral", 1, -1 + 2 - 1),
        ("inflow", "neutral", "put_confirm", 1, 1 - 2 - 1),  # MDIA vs MVRV-LS
        ("neutral", "strategic_accum", "bear", 1, 1 + 0 - 1),  # whales vs MVRV-LS (bear counts as bearish)
        ("inflow", "distribution", "trend_confirm", 2, 1 - 1 + 1 - 2),
        ("strong_inflow", "strong_distribution", "call_confirm_recovery", 2, 2 - 2 + 2 - 2),
        ("distribution", "broad_accum", "put_confirm", 2, -1 + 2 - 2 - 2),
    ],
)
def test_conflicts_cost_one_each(m, w, v, conflicts, score):
    s, c = fusion_score([m], [w], [v])
    assert (c[0], s[0]) == (conflicts, score)


@pytest.mark.parametrize(
    "m,w,v,conf",
    [
        ("strong_inflow", "strategic_accum", "call_confirm_recovery", "high"),  # +5 long
        ("strong_inflow", "strategic_accum", "trend_confirm", "high"),  # +4 long
        ("inflow", "strategic_accum", "improving", "medium"),  # +2 long (early_recovery)
        ("inflow", "neutral", "improving", "low"),  # +1 long (momentum_continuation)
        ("distribution", "strong_distribution", "put_confirm", "high"),  # -5 short
        ("neutral", "distribution", "rollover", "low"),  # -1 short (distribution_risk)
    ],
)
def test_confidence_mapping_in_trade_direction(m, w, v, conf):
    assert one(m, w, v)["confidence"] == conf


@pytest.mark.parametrize(
    "m,w,v,state,trade,size",
    [
        ("strong_inflow", "broad_accum", "call_confirm_recovery", "strong_bullish", "LONG", 1.0),
        ("strong_inflow", "strategic_accum", "trend_confirm", "strong_bullish", "LONG", 1.0),
        ("inflow", "broad_accum", "call_confirm_recovery", "early_recovery", "LONG", 1.0),  # not strong MDIA
        ("strong_inflow", "broad_accum", "improving", "early_recovery", "LONG", 1.0),
        ("neutral", "distribution", "bear", "bear_continuation", "PRIMARY_SHORT", 0.5),  # score -1: LOW -> reduced
        ("distribution", "strong_distribution", "put_confirm", "bear_continuation", "PRIMARY_SHORT", 1.0),
        ("inflow", "distribution", "distribution_warning", "distribution_risk", "PRIMARY_SHORT", 1.0),  # -3 -> medium
        ("distribution", "distribution", "weak_down", "distribution_risk", "PRIMARY_SHORT", 1.0),
        ("strong_inflow", "distribution", "rollover", "no_trade", None, 0.0),  # MDIA strong blocks the risk call
        ("inflow", "mixed", "improving", "momentum_continuation", "LONG", 0.5),
        ("strong_inflow", "neutral", "trend_confirm", "momentum_continuation", "LONG", 1.0),
        ("inflow", "strategic_accum", "neutral", "bull_probe", "BULL_PROBE", 0.5),
        ("strong_inflow", "broad_accum", "neutral", "bull_probe", "BULL_PROBE", 0.6),
        ("distribution", "distribution", "neutral", "bear_probe", "BEAR_PROBE", 0.5),
        ("distribution", "strong_distribution", "neutral", "bear_probe", "BEAR_PROBE", 0.5),
        ("neutral", "neutral", "neutral", "no_trade", None, 0.0),
        ("inflow", "broad_accum", "put_confirm", "no_trade", None, 0.0),  # sponsorship without terrain
        ("distribution", "broad_accum", "bear", "no_trade", None, 0.0),
    ],
)
def test_state_hierarchy(m, w, v, state, trade, size):
    r = one(m, w, v)
    assert (r["state"], r["trade_type"], r["base_size"]) == (state, trade, size)


def test_bear_continuation_is_checked_before_distribution_risk():
    # whale distrib + MDIA not inflow + MVRV bear matches bear_continuation; distribution_risk needs rollover-type MVRV
    assert one("distribution", "distribution", "bear")["state"] == "bear_continuation"
    assert one("neutral", "strong_distribution", "distribution_warning")["state"] == "distribution_risk"


def test_probe_score_gates():
    p = FusionParams(bull_probe_min_score=3, bear_probe_max_score=-3)
    r = one("inflow", "strategic_accum", "neutral", p)
    assert r["state"] == "no_trade" and r["state_reason"] == "bull_probe gated: score < 3"
    r = one("distribution", "distribution", "neutral", p)
    assert r["state"] == "no_trade" and r["state_reason"] == "bear_probe gated: score > -3"
    assert one("distribution", "strong_distribution", "neutral", p)["state"] == "bear_probe"  # -3 passes


def test_unavailable_is_never_neutral():
    r = one("unavailable", "broad_accum", "call_confirm_recovery")
    assert r["state"] == "no_trade" and r["state_reason"] == "unavailable:mdia" and pd.isna(r["score"])
    assert r["confidence"] is None
    r = one("strong_inflow", None, "call_confirm_recovery")
    assert r["state_reason"] == "unavailable:whales"


def test_every_combination_is_classified_consistently():
    combos = pd.DataFrame(
        list(itertools.product(MDIA_REGIMES, WHALE_REGIMES, MVRV_LS_REGIMES)),
        columns=["mdia_regime", "whale_regime", "mvrv_ls_regime"],
    )
    f = fuse(combos)
    assert len(f) == 4 * 6 * 9 and set(f["state"]) == set(STATES)
    assert f["score"].between(-6, 6).all()
    long_ = f["state"].isin(["strong_bullish", "early_recovery", "momentum_continuation", "bull_probe"])
    short = f["state"].isin(["distribution_risk", "bear_continuation", "bear_probe"])
    assert (f.loc[long_, "direction"] == 1).all() and (f.loc[short, "direction"] == -1).all()
    assert (f.loc[f.state == "no_trade", "base_size"] == 0).all()
    # philosophy 2: no long trade without whale sponsorship except momentum continuation (whales neutral/mixed)
    nospons = ~combos["whale_regime"].isin(["broad_accum", "strategic_accum"])
    assert set(f.loc[long_ & nospons, "state"]) <= {"momentum_continuation"}
    # probes are always smaller than full trades
    assert f.loc[f.trade_type.isin(["BULL_PROBE", "BEAR_PROBE"]), "base_size"].between(0.35, 0.6).all()


# --- overlays -------------------------------------------------------------------------------------------

O = OverlayParams()


@pytest.mark.parametrize(
    "fs,uv,eu,ov,kind,size,dte",
    [
        (True, True, False, False, "full_edge", 1.25, 1.5),
        (True, False, False, False, "partial_edge", 1.10, 1.0),
        (False, True, False, False, "partial_edge", 1.10, 1.0),
        (False, False, True, False, "moderate_veto", 0.5, 1.0),
        (False, False, True, True, "strong_veto", 0.0, 1.0),
        (True, True, True, True, "strong_veto", 0.0, 1.0),  # rule 1: strong veto always wins
        (True, False, True, True, "strong_veto", 0.0, 1.0),
        (True, False, True, False, "moderate_veto", 0.5, 1.0),  # rule 2: moderate veto beats partial edge
        (False, True, True, False, "moderate_veto", 0.5, 1.0),
        (True, True, True, False, "full_edge", 1.25, 1.5),  # rule 3: full edge overrides moderate veto
        (False, False, False, True, "none", 1.0, 1.0),  # overvalued rollover alone is not a veto
        (False, False, False, False, "none", 1.0, 1.0),
    ],
)
def test_long_overlay_and_veto_dominance(fs, uv, eu, ov, kind, size, dte):
    r = long_overlay([fs], [uv], [eu], [ov], O).iloc[0]
    assert (r["overlay"], r["size_mult"], r["dte_mult"]) == (kind, size, dte)


@pytest.mark.parametrize(
    "score,kind,size",
    [
        (0.95, "full_edge", 1.15),
        (0.85, "full_edge", 1.15),
        (0.84, "partial_edge", 1.05),
        (0.75, "partial_edge", 1.05),
        (0.6, "none", 1.0),
        (0.36, "none", 1.0),
        (0.35, "soft_veto", 0.5),
        (0.3, "soft_veto", 0.5),
        (0.25, "hard_veto", 0.0),
        (0.1, "hard_veto", 0.0),
        (np.nan, "none", 1.0),
    ],
)
def test_short_overlay_bands(score, kind, size):
    r = short_overlay([score], O).iloc[0]
    assert (r["overlay"], r["size_mult"]) == (kind, size)
    assert r["dte_mult"] == (1.25 if kind == "full_edge" else 1.0)


def test_near_peak_score_blend():
    s = near_peak_score([1.0, 0.5, 0.0, np.nan], [0.0, 0.125, 0.5, 0.0], O)
    np.testing.assert_allclose(s[:3], [1.0, 0.5 * 0.5 + 0.5 * 0.5, 0.0])
    assert np.isnan(s[3])


# --- tactical puts, structures, cooldowns ----------------------------------------------------------------


def test_tactical_puts_only_inside_bull_states_sized_by_warning_signs():
    t = tactical_puts(
        ["strong_bullish", "early_recovery", "bull_probe", "distribution_risk", "momentum_continuation"],
        ["rollover", "rollover", "neutral", "rollover", "neutral"],
        ["broad_accum", "distribution", "broad_accum", "distribution", "neutral"],
        [0.5, 0.9, 0.2, 0.9, 0.1],
        [False, True, False, True, False],
        TacticalPutParams(),
    )
    assert t["tactical_put"].tolist() == [True, True, False, False, False]
    assert t["tactical_size"].tolist() == [0.4, 0.6, 0.0, 0.0, 0.0]  # 1 sign -> 0.4; 4 signs -> capped 0.6
    assert t["tactical_reason"][0] == "MVRV-LS rolling over"


def test_option_structures_strikes_and_expiry():
    sp = StructureParams()
    d = pd.Timestamp("2024-11-06")  # a Wednesday
    c = option_structure("LONG", 75_321.0, d, 1.5, sp)
    assert c["structure"] == "LONG_CALL" and c["strike_long"] == 79_000.0 and c["strike_short"] is None
    assert pd.Timestamp(c["expiry"]).weekday() == 4 and c["dte"] >= round(45 * 1.5)
    s = option_structure("BEAR_PROBE", 75_321.0, d, 1.0, sp)
    assert (s["structure"], s["strike_long"], s["strike_short"]) == ("PUT_SPREAD", 75_000.0, 68_000.0)
    assert option_structure("TACTICAL_PUT", 75_321.0, d, 1.0, sp)["structure"] == "TACTICAL_PUT"
    assert option_structure("PRIMARY_SHORT", 75_321.0, d, 1.0, sp)["strike_long"] == 72_000.0


def test_cooldown_collapses_clusters_per_type():
    dates = pd.Series(pd.date_range("2024-01-01", periods=12, freq="D"))
    types = pd.Series(["LONG"] * 8 + [None, "BULL_PROBE", "BULL_PROBE", "LONG"])
    taken = cooldown(dates, types, COOLDOWN_DAYS)
    # LONG on day 0 taken; days 1-6 inside 7-day cooldown; day 7 taken; day 11 (4 days after) suppressed
    assert np.flatnonzero(taken).tolist() == [0, 7, 9]
    probes = pd.Series(["BEAR_PROBE"] * 6)
    assert np.flatnonzero(cooldown(dates[:6], probes, COOLDOWN_DAYS)).tolist() == [0, 5]


# --- model scores beside the fusion (configuration: display / veto / scale) ---------------------------------

from pipeline.core.options_fusion import ModelGateParams, model_gate  # noqa: E402

_DIR = np.array([1, 1, -1, -1, -1, 1])
_TYPE = np.array(["LONG", "BULL_PROBE", "PRIMARY_SHORT", "BEAR_PROBE", "TACTICAL_PUT", "LONG"], dtype=object)
_PL = np.array([0.62, 0.40, 0.9, 0.9, 0.9, np.nan])
_PS = np.array([0.1, 0.1, 0.55, 0.30, 0.10, 0.2])


def test_model_gate_display_changes_nothing():
    mult, why = model_gate(_DIR, _TYPE, _PL, _PS, ModelGateParams())
    assert mult.tolist() == [1.0] * 6 and set(why) == {"display only"}


def test_model_gate_veto_reads_the_side_of_the_trade():
    mult, why = model_gate(_DIR, _TYPE, _PL, _PS, ModelGateParams(mode="veto", min_p_long=0.5, min_p_short=0.5))
    # call side reads p_long, put side p_short; tactical puts exempt by default; no score -> allowed by default
    assert mult.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert why[1] == "p_long 0.40 < 0.50: model veto" and why[3] == "p_short 0.30 < 0.50: model veto"
    assert why[4] == "tactical puts not gated" and why[5] == "no champion score: allowed"
    strict = ModelGateParams(mode="veto", gate_tactical_puts=True, when_missing="block")
    mult, why = model_gate(_DIR, _TYPE, _PL, _PS, strict)
    assert mult.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0] and why[5] == "no champion score: blocked"


def test_model_gate_scale_is_clipped():
    mult, _ = model_gate(
        _DIR,
        _TYPE,
        _PL,
        _PS,
        ModelGateParams(mode="scale", min_p_long=0.5, min_p_short=0.5, scale_floor=0.5, scale_cap=1.5),
    )
    np.testing.assert_allclose(mult, [1.24, 0.8, 1.1, 0.6, 1.0, 1.0])
    with pytest.raises(ValueError):
        ModelGateParams(mode="sometimes")


def test_decide_days_applies_the_gate_before_cooldowns():
    from pipeline.core.options_fusion import OptionsDeskParams, decide_days

    n = 10
    f = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="D"),
            "mdia_regime": "strong_inflow",
            "whale_regime": "broad_accum",
            "mvrv_ls_regime": "call_confirm_recovery",
            "mdia_source": "x",
            "whale_source": "x",
            "mvrv_ls_source": "x",
            "fng_value": 50.0,
            "mvrv_composite": 0.5,
            "mvrv_chg_14d": 0.0,
            "mvrv_60d_pct_rank": 0.5,
            "mvrv_60d_dist_from_max": 0.2,
        }
    )
    spot = pd.Series(60_000.0, index=f.index)
    scores = pd.DataFrame({"p_long": [0.3, 0.3, 0.7] + [0.7] * 7, "p_short": 0.2}, index=f.index)
    _, free = decide_days(f, spot, OptionsDeskParams(), scores)
    assert free.loc[free.cooldown_status == "taken", "date"].dt.day.tolist() == [1, 8]
    _, gated = decide_days(f, spot, OptionsDeskParams(model_gate=ModelGateParams(mode="veto")), scores)
    # days 1-2 vetoed by p_long: the first trade is day 3, and its cooldown (not a vetoed day's) starts then
    taken = gated[gated.cooldown_status == "taken"]
    assert taken["date"].dt.day.tolist() == [3, 10] and (taken["model_gate"] == "p_long 0.70: passes").all()
