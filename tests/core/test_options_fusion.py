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
    UNAVAILABLE,
    WHALE_REGIMES,
    FusionParams,
    OverlayParams,
    StructureParams,
    TacticalPutParams,
    band_probe_sizes,
    confidence,
    conviction,
    cooldown,
    fuse,
    fusion_score,
    long_overlay,
    near_peak_score,
    option_structure,
    short_overlay,
    strike_step,
    strikes,
    tactical_puts,
)


def one(m, w, v, p=None):
    return fuse(pd.DataFrame({"mdia_regime": [m], "whale_regime": [w], "mvrv_ls_regime": [v]}), p).iloc[0]


def _days(n: int, **cols) -> pd.DataFrame:
    """``n`` consecutive days of decide_days input (a strong bullish day with neutral overlays unless overridden)."""
    base = {
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
    return pd.DataFrame({**base, **cols})


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
        ("inflow", "distribution", "neutral", 1, 1 - 1),  # MDIA vs whales
        ("distribution", "broad_accum", "neutral", 1, -1 + 2),
        ("inflow", "neutral", "put_confirm", 1, 1 - 2),  # MDIA vs MVRV-LS
        ("neutral", "strategic_accum", "bear", 1, 1 + 0),  # whales vs MVRV-LS (bear counts as bearish)
        ("inflow", "distribution", "trend_confirm", 2, 1 - 1 + 1),
        ("strong_inflow", "strong_distribution", "call_confirm_recovery", 2, 2 - 2 + 2),
        ("distribution", "broad_accum", "put_confirm", 2, -1 + 2 - 2),
    ],
)
def test_conflicts_are_counted_beside_the_indicator_score(m, w, v, conflicts, score):
    s, c = fusion_score([m], [w], [v])
    assert (c[0], s[0]) == (conflicts, score)


@pytest.mark.parametrize(
    "m,w,v,state,score,conflicts,conv,conf",
    [
        # shorts: each conflict lowers conviction (was: -1 per conflict on the bull-positive score made them stronger)
        ("inflow", "distribution", "distribution_warning", "distribution_risk", -1, 2, -1, "low"),  # was -3 MEDIUM
        ("inflow", "strong_distribution", "distribution_warning", "distribution_risk", -2, 2, 0, "low"),  # was HIGH
        ("inflow", "strong_distribution", "weak_down", "distribution_risk", -1, 1, 0, "low"),  # was -2 MEDIUM
        ("inflow", "distribution", "rollover", "distribution_risk", -0, 1, -1, "low"),
        ("distribution", "strong_distribution", "distribution_warning", "distribution_risk", -4, 0, 4, "high"),
        ("neutral", "strong_distribution", "distribution_warning", "distribution_risk", -3, 0, 3, "medium"),
        # longs: no long state admits a bearish indicator, so conflicts are 0 and conviction = score
        ("strong_inflow", "broad_accum", "call_confirm_recovery", "strong_bullish", 6, 0, 6, "high"),
        ("inflow", "strategic_accum", "improving", "early_recovery", 2, 0, 2, "medium"),
        # no trade: |score| - conflicts
        ("inflow", "distribution", "trend_confirm", "no_trade", 1, 2, -1, "low"),
        ("strong_inflow", "broad_accum", "put_confirm", "no_trade", 2, 2, 0, "low"),
        ("distribution", "broad_accum", "put_confirm", "no_trade", -1, 2, -1, "low"),
        ("distribution", "strong_distribution", "trend_confirm", "no_trade", -2, 2, 0, "low"),
    ],
)
def test_conflicts_lower_conviction_in_both_directions(m, w, v, state, score, conflicts, conv, conf):
    r = one(m, w, v)
    got = (r["state"], r["score"], r["conflicts"], r["conviction"], r["confidence"])
    assert got == (state, score, conflicts, conv, conf)


@pytest.mark.parametrize(
    "score,conflicts,direction,conv,conf",
    [
        (5, 0, 1, 5, "high"),
        (5, 1, 1, 4, "high"),
        (5, 2, 1, 3, "medium"),
        (3, 2, 1, 1, "low"),
        (-5, 0, -1, 5, "high"),
        (-5, 1, -1, 4, "high"),
        (-5, 2, -1, 3, "medium"),  # was -7: HIGH
        (-3, 2, -1, 1, "low"),  # was -5: HIGH
        (-1, 2, -1, -1, "low"),  # was -3: MEDIUM
        (4, 1, 0, 3, "medium"),
        (-4, 1, 0, 3, "medium"),
        (0, 2, 0, -2, "low"),
    ],
)
def test_conviction_truth_table(score, conflicts, direction, conv, conf):
    c = conviction([score], [conflicts], [direction])
    assert c[0] == conv and confidence(c, FusionParams())[0] == conf


def test_a_conflict_never_raises_confidence():
    s = np.repeat(np.arange(-6, 7), 3 * 4)
    c = np.tile(np.repeat(np.arange(4), 3), 13)
    d = np.tile([-1, 0, 1], 13 * 4)
    rank = {"low": 0, "medium": 1, "high": 2}
    with_c = [rank[x] for x in confidence(conviction(s, c, d), FusionParams())]
    more_c = [rank[x] for x in confidence(conviction(s, c + 1, d), FusionParams())]
    assert (conviction(s, c + 1, d) == conviction(s, c, d) - 1).all()
    assert all(a <= b for a, b in zip(more_c, with_c))


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
        ("inflow", "distribution", "distribution_warning", "distribution_risk", "PRIMARY_SHORT", 0.5),  # conv -1: LOW
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
    assert r["state"] == "no_trade" and r["state_reason"] == "bull_probe gated: conviction < 3"
    r = one("distribution", "distribution", "neutral", p)
    assert r["state"] == "no_trade" and r["state_reason"] == "bear_probe gated: score + conflicts > -3"
    r = one("neutral", "strategic_accum", "trend_confirm", p)  # the second bull_probe rule is gated too (+2)
    assert r["state"] == "no_trade" and r["state_reason"] == "bull_probe gated: conviction < 3"
    assert one("distribution", "strong_distribution", "neutral", p)["state"] == "bear_probe"  # -3 passes


def test_unavailable_is_never_neutral():
    r = one("unavailable", "broad_accum", "call_confirm_recovery")
    assert r["state"] == "no_trade" and r["state_reason"] == "unavailable:mdia" and pd.isna(r["score"])
    assert r["confidence"] is None
    r = one("strong_inflow", None, "call_confirm_recovery")
    assert r["state_reason"] == "unavailable:whales"


#: expected state of every (MDIA, whales) pair over MVRV_LS_REGIMES in their order:
#: call_confirm_recovery, trend_confirm, improving, neutral, rollover, weak_down, distribution_warning, put_confirm, bear
#: SB strong_bullish, ER early_recovery, MC momentum_continuation, BP bull_probe, BC bear_continuation,
#: DR distribution_risk, XP bear_probe, NT no_trade (written by hand from the table in the engine's docstring)
STATE_TABLE = {
    ("strong_inflow", "broad_accum"): "SB SB ER BP NT NT NT NT NT",
    ("strong_inflow", "strategic_accum"): "SB SB ER BP NT NT NT NT NT",
    ("strong_inflow", "neutral"): "MC MC MC NT NT NT NT NT NT",
    ("strong_inflow", "mixed"): "MC MC MC NT NT NT NT NT NT",
    ("strong_inflow", "distribution"): "NT NT NT NT NT NT NT NT NT",  # MDIA strong blocks the risk call
    ("strong_inflow", "strong_distribution"): "NT NT NT NT NT NT NT NT NT",
    ("inflow", "broad_accum"): "ER ER ER BP NT NT NT NT NT",
    ("inflow", "strategic_accum"): "ER ER ER BP NT NT NT NT NT",
    ("inflow", "neutral"): "MC MC MC NT NT NT NT NT NT",
    ("inflow", "mixed"): "MC MC MC NT NT NT NT NT NT",
    ("inflow", "distribution"): "NT NT NT NT DR DR DR NT NT",
    ("inflow", "strong_distribution"): "NT NT NT NT DR DR DR NT NT",
    ("neutral", "broad_accum"): "BP BP NT NT NT NT NT NT NT",  # sponsorship + terrain without ignition: a probe
    ("neutral", "strategic_accum"): "BP BP NT NT NT NT NT NT NT",
    ("neutral", "neutral"): "NT NT NT NT NT NT NT NT NT",
    ("neutral", "mixed"): "NT NT NT NT NT NT NT NT NT",
    ("neutral", "distribution"): "NT NT NT NT DR DR DR BC BC",
    ("neutral", "strong_distribution"): "NT NT NT NT DR DR DR BC BC",
    ("distribution", "broad_accum"): "NT NT NT NT NT NT NT NT NT",
    ("distribution", "strategic_accum"): "NT NT NT NT NT NT NT NT NT",
    ("distribution", "neutral"): "NT NT NT NT NT NT NT NT NT",
    ("distribution", "mixed"): "NT NT NT NT NT NT NT NT NT",
    ("distribution", "distribution"): "NT NT NT XP DR DR DR BC BC",
    ("distribution", "strong_distribution"): "NT NT NT XP DR DR DR BC BC",
}
CODES = {
    "SB": "strong_bullish",
    "ER": "early_recovery",
    "MC": "momentum_continuation",
    "BP": "bull_probe",
    "BC": "bear_continuation",
    "DR": "distribution_risk",
    "XP": "bear_probe",
    "NT": "no_trade",
}


def _all_combinations(extra=()) -> pd.DataFrame:
    regs = [MDIA_REGIMES + extra, WHALE_REGIMES + extra, MVRV_LS_REGIMES + extra]
    return pd.DataFrame(list(itertools.product(*regs)), columns=["mdia_regime", "whale_regime", "mvrv_ls_regime"])


def test_state_truth_table_covers_every_combination():
    assert set(STATE_TABLE) == set(itertools.product(MDIA_REGIMES, WHALE_REGIMES))  # 4 x 6 pairs, 9 MVRV-LS each
    combos = _all_combinations()
    expected = [
        CODES[STATE_TABLE[(m, w)].split()[MVRV_LS_REGIMES.index(v)]] for m, w, v in combos.itertuples(index=False)
    ]
    f = fuse(combos)
    got = f["state"].tolist()
    wrong = [(tuple(combos.iloc[i]), got[i], expected[i]) for i in range(len(got)) if got[i] != expected[i]]
    assert not wrong, wrong
    assert len(f) == 4 * 6 * 9 and set(f["state"]) == set(STATES)
    assert (f["state_reason"].str.len() > 0).all() and f["state_reason"].notna().all()
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


def test_two_bullish_indicators_and_nothing_bearish_always_trade_long():
    """Issue 12 item 3: fully bullish days (e.g. inflow + broad_accum + trend_confirm, +4) used to be NO_TRADE."""
    combos = _all_combinations()
    bull = (
        combos["mdia_regime"].isin(["inflow", "strong_inflow"]).astype(int)
        + combos["whale_regime"].isin(["broad_accum", "strategic_accum"]).astype(int)
        + combos["mvrv_ls_regime"].isin(["call_confirm_recovery", "trend_confirm"]).astype(int)
    )
    calm = (
        combos["mdia_regime"].isin(["inflow", "strong_inflow", "neutral"])
        & combos["whale_regime"].isin(["broad_accum", "strategic_accum", "neutral", "mixed"])
        & combos["mvrv_ls_regime"].isin(["call_confirm_recovery", "trend_confirm", "improving", "neutral"])
    )
    f = fuse(combos)
    assert (f.loc[(bull >= 2) & calm, "direction"] == 1).all()
    assert one("inflow", "broad_accum", "trend_confirm")["state"] == "early_recovery"
    assert one("neutral", "broad_accum", "trend_confirm")["state"] == "bull_probe"
    assert one("strong_inflow", "mixed", "call_confirm_recovery")["state"] == "momentum_continuation"


def test_unavailable_in_any_combination_is_no_trade_with_its_reason():
    combos = _all_combinations(extra=(UNAVAILABLE,))
    combos = combos[(combos == UNAVAILABLE).any(axis=1)]
    assert len(combos) == 5 * 7 * 10 - 4 * 6 * 9
    f = fuse(combos)
    first = np.select(
        [combos[c].eq(UNAVAILABLE) for c in ("mdia_regime", "whale_regime", "mvrv_ls_regime")],
        ["unavailable:mdia", "unavailable:whales", "unavailable:mvrv_ls"],
        "",
    )
    assert (f["state"] == "no_trade").all() and (f["state_reason"] == first).all()
    assert f["score"].isna().all() and f["conviction"].isna().all() and f["confidence"].isna().all()


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


# --- probe sizes stay in the seed's band (issue 12 item 4) ----------------------------------------------------


@pytest.mark.parametrize(
    "mode,expected",
    [("floor", [0.35, 0.6, 0.25, 0.0, 0.5, 0.35]), ("skip", [0.0, 0.6, 0.25, 0.0, 0.5, 0.0])],
)
def test_band_probe_sizes(mode, expected):
    types = ["BULL_PROBE", "BEAR_PROBE", "LONG", "BULL_PROBE", "BULL_PROBE", "BEAR_PROBE"]
    got = band_probe_sizes(types, [0.25, 0.75, 0.25, 0.0, 0.5, 0.175], FusionParams(probe_below_band=mode))
    np.testing.assert_allclose(got, expected)


def test_probe_band_is_validated():
    with pytest.raises(ValueError):
        FusionParams(probe_size_by_confidence={"high": 0.6, "medium": 0.5, "low": 0.2})
    with pytest.raises(ValueError):
        FusionParams(probe_size_band=(0.6, 0.35))
    with pytest.raises(ValueError):
        FusionParams(probe_below_band="sometimes")


def test_moderate_veto_on_a_probe_floors_it_at_the_band_or_skips_it():
    """Euphoria persisting (F&G >= 75 on 7 of 7 days, from the 7th day) halves a MEDIUM probe: 0.5 -> 0.25 -> 0.35."""
    from pipeline.core.options_fusion import OptionsDeskParams, decide_days

    f = _days(10, mdia_regime="inflow", whale_regime="strategic_accum", mvrv_ls_regime="neutral", fng_value=80.0)
    spot = pd.Series(60_000.0, index=f.index)
    daily, t = decide_days(f, spot)
    assert (daily["state"] == "bull_probe").all() and (daily["confidence"] == "medium").all()
    assert daily["overlay"].tolist() == ["none"] * 6 + ["moderate_veto"] * 4
    assert daily["size"].tolist() == [0.5] * 6 + [0.35] * 4
    probes = t[t["trade_type"] == "BULL_PROBE"]
    assert probes["size"].tolist() == [0.5] * 6 + [0.35] * 4
    assert probes["reason"].str.contains("probe size held in 0.35-0.6").tolist() == [False] * 6 + [True] * 4
    p = OptionsDeskParams(fusion=FusionParams(probe_below_band="skip"))
    daily, t = decide_days(f, spot, p)
    assert daily["size"].tolist() == [0.5] * 6 + [0.0] * 4
    assert t.loc[t["trade_type"] == "BULL_PROBE", "date"].dt.day.tolist() == [1, 2, 3, 4, 5, 6]


def test_full_edge_on_a_high_probe_is_capped_and_the_model_gate_scale_is_banded_too():
    from pipeline.core.options_fusion import ModelGateParams, OptionsDeskParams, decide_days

    # HIGH probe (+4, 0.6) with fear stabilizing + MVRV undervalued: full edge x1.25 = 0.75 -> 0.6
    f = _days(10, mvrv_ls_regime="neutral", fng_value=20.0, mvrv_composite=0.1)
    spot = pd.Series(60_000.0, index=f.index)
    daily, t = decide_days(f, spot)
    edge = daily["overlay"] == "full_edge"
    assert edge.sum() == 3 and (daily.loc[edge, "size"] == 0.6).all()  # F&G 7 days back exists from day 8
    # a MEDIUM probe scaled by p_long 0.3 / 0.5 = x0.6: 0.5 -> 0.3 -> 0.35
    f = _days(3, mdia_regime="inflow", whale_regime="strategic_accum", mvrv_ls_regime="neutral")
    scores = pd.DataFrame({"p_long": 0.3, "p_short": 0.5}, index=f.index)
    p = OptionsDeskParams(model_gate=ModelGateParams(mode="scale"))
    _, t = decide_days(f, pd.Series(60_000.0, index=f.index), p, scores)
    assert t["size"].tolist() == [0.35] * 3 and t["reason"].str.endswith("probe size held in 0.35-0.6").all()


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
    assert t["tactical_signs"].tolist() == [1, 4, 0, 4, 0]
    assert t["tactical_confidence"].tolist() == ["low", "high", None, None, None]


@pytest.mark.parametrize("signs,conf", [(1, "low"), (2, "medium"), (3, "high"), (4, "high")])
def test_tactical_put_confidence_from_its_warning_signs(signs, conf):
    flags = [i < signs for i in range(4)]
    t = tactical_puts(
        ["strong_bullish"],
        ["rollover" if flags[0] else "neutral"],
        ["distribution" if flags[1] else "broad_accum"],
        [0.9 if flags[2] else 0.1],
        [flags[3]],
        TacticalPutParams(),
    ).iloc[0]
    assert (t["tactical_signs"], t["tactical_confidence"]) == (signs, conf)
    assert t["tactical_size"] == pytest.approx(min(0.4 + 0.1 * (signs - 1), 0.6))


def test_decide_days_hedges_carry_their_own_confidence():
    """Issue 12 item 7: a hedge on a HIGH bull day with one warning sign is a LOW-confidence hedge, not HIGH."""
    from pipeline.core.options_fusion import decide_days

    f = _days(3, mvrv_ls_regime="call_confirm_recovery", mvrv_60d_pct_rank=0.95, mvrv_60d_dist_from_max=0.0)
    daily, t = decide_days(f, pd.Series(60_000.0, index=f.index))
    assert (daily["state"] == "strong_bullish").all() and (daily["confidence"] == "high").all()
    hedge = t[t["trade_type"] == "TACTICAL_PUT"].iloc[0]
    assert hedge["confidence"] == "low" and hedge["size"] == 0.4 and "MVRV-60d near peak" in hedge["reason"]


def test_option_structures_strikes_and_expiry():
    sp = StructureParams()
    d = pd.Timestamp("2024-11-06")  # a Wednesday; spot 75,321: step 500 (the largest 1/2/2.5/5 x 10^k <= 753.21)
    c = option_structure("LONG", 75_321.0, d, 1.5, sp)
    assert c["structure"] == "LONG_CALL" and c["strike_long"] == 79_000.0 and c["strike_short"] is None  # 79,087
    assert pd.Timestamp(c["expiry"]).weekday() == 4 and c["dte"] >= round(45 * 1.5)
    s = option_structure("BEAR_PROBE", 75_321.0, d, 1.0, sp)
    assert (s["structure"], s["strike_long"], s["strike_short"]) == ("PUT_SPREAD", 75_500.0, 68_000.0)  # 67,789
    assert option_structure("TACTICAL_PUT", 75_321.0, d, 1.0, sp)["structure"] == "TACTICAL_PUT"
    assert option_structure("PRIMARY_SHORT", 75_321.0, d, 1.0, sp)["strike_long"] == 71_500.0  # 71,555


@pytest.mark.parametrize(
    "spot,step",
    [(100, 1), (150, 1), (199.99, 1), (200, 2), (250, 2.5), (499, 2.5), (999, 5), (1_000, 10), (6_000, 50)]
    + [(13.5, 0.1), (0.06, 0.0005), (20_000, 200), (64_000, 500), (100_000, 1_000), (200_000, 2_000)],
)
def test_strike_step_scales_with_price(spot, step):
    assert strike_step([spot], StructureParams())[0] == pytest.approx(step, rel=1e-12)


def test_strikes_2013_hand_computed():
    """Spot 123.45 (2013): step 1; the fixed 1,000 USD grid made both legs of this call spread 0."""
    s = option_structure("BULL_PROBE", 123.45, pd.Timestamp("2013-04-01"), 1.0, StructureParams())
    assert (s["strike_long"], s["strike_short"]) == (123.0, 136.0)  # 123.45 and 135.795 on a 1-USD grid
    p = option_structure("BEAR_PROBE", 123.45, pd.Timestamp("2013-04-01"), 1.0, StructureParams())
    assert (p["strike_long"], p["strike_short"]) == (123.0, 111.0)  # 111.105
    assert (
        option_structure("TACTICAL_PUT", 123.45, pd.Timestamp("2013-04-01"), 1.0, StructureParams())["strike_long"]
        == 114.0
    )  # 113.574


PRICES = np.unique(
    np.concatenate([np.geomspace(100, 200_000, 1_500), np.random.default_rng(7).uniform(100, 200_000, 500)])
)
LEGS = {
    "LONG": ("long_call_moneyness", None, 0),
    "BULL_PROBE": ("call_spread", 0, 1),
    "PRIMARY_SHORT": ("long_put_moneyness", None, 0),
    "BEAR_PROBE": ("put_spread", 0, -1),
    "TACTICAL_PUT": ("tactical_put_moneyness", None, 0),
}


def _targets(trade_type, sp):
    name, _, _ = LEGS[trade_type]
    v = getattr(sp, name)
    return v if isinstance(v, tuple) else (v, None)


@pytest.mark.parametrize("trade_type", list(LEGS))
def test_every_strike_is_within_one_step_of_its_moneyness_at_any_price(trade_type):
    """Issue 12 item 2: from 100 to 200,000 USD every strike sits within a grid step of its target, the step is a
    small fraction of spot (0.4-1 %), and a spread's legs are distinct and on the right side."""
    sp = StructureParams()
    d = pd.Timestamp("2020-01-01")
    m_long, m_short = _targets(trade_type, sp)
    side = LEGS[trade_type][2]
    for spot in PRICES:
        step = strike_step([spot], sp)[0]
        assert 0.004 * spot < step <= 0.01 * spot
        s = option_structure(trade_type, float(spot), d, 1.0, sp)
        assert abs(s["strike_long"] - spot * (1 + m_long)) <= step / 2 * (1 + 1e-9)
        assert s["strike_long"] > 0 and abs(s["strike_long"] / step - round(s["strike_long"] / step)) < 1e-6
        if m_short is None:
            assert s["strike_short"] is None
        else:
            assert abs(s["strike_short"] - spot * (1 + m_short)) <= step * (1 + 1e-9)
            assert side * (s["strike_short"] - s["strike_long"]) >= step * (1 - 1e-9)  # distinct, further OTM


@pytest.mark.parametrize("spread,side", [((0.0, 0.002), 1), ((0.0, -0.002), -1), ((0.03, 0.031), 1)])
def test_narrow_spread_legs_never_collapse(spread, side):
    """A sold leg that rounds onto the bought one moves one step further OTM (within 1.5 steps of its target)."""
    key = "call_spread" if side > 0 else "put_spread"
    sp = StructureParams(**{key: spread})
    trade = "BULL_PROBE" if side > 0 else "BEAR_PROBE"
    for spot in PRICES[::7]:
        s = option_structure(trade, float(spot), pd.Timestamp("2020-01-01"), 1.0, sp)
        step = strike_step([spot], sp)[0]
        assert side * (s["strike_short"] - s["strike_long"]) >= step * (1 - 1e-9)
        assert abs(s["strike_short"] - spot * (1 + spread[1])) <= 1.5 * step * (1 + 1e-9)


def test_structure_params_reject_inverted_spreads_and_bad_steps():
    with pytest.raises(ValueError):
        StructureParams(call_spread=(0.1, 0.0))
    with pytest.raises(ValueError):
        StructureParams(put_spread=(-0.1, 0.0))
    with pytest.raises(ValueError):
        StructureParams(strike_step_mantissas=(2.0, 5.0))
    with pytest.raises(ValueError):
        strikes([0.0], 0.05, StructureParams())
    np.testing.assert_allclose(strikes([100.0, 64_000.0], 0.05, StructureParams()), [105.0, 67_000.0])


def test_real_history_strikes_and_probe_sizes(onchain_inputs):
    """The whole real record (2010-): no strike 0, no degenerate spread, every leg within 5 points (in fact one step)
    of its target moneyness, every probe sized in 0.35-0.60 and every hedge with its own confidence."""
    from pipeline.core.onchain_signals import onchain_features
    from pipeline.core.options_fusion import decide_days

    oc, fng = onchain_inputs
    f = onchain_features(oc, fng)
    daily, t = decide_days(f, f["date"].map(oc.set_index("date")["price_usd"]))
    sp = StructureParams()
    assert len(t) > 1000 and pd.to_datetime(t["date"]).min().year <= 2012
    m_long = t["trade_type"].map(lambda x: _targets(x, sp)[0])
    m_short = t["trade_type"].map(lambda x: _targets(x, sp)[1]).astype(float)
    step = strike_step(t["spot_usd"].to_numpy(float), sp)
    assert (t["strike_long"] > 0).all()
    assert ((t["strike_long"] - t["spot_usd"] * (1 + m_long)).abs() <= step / 2 + 1e-9).all()
    spread = t["strike_short"].notna()
    k2 = t.loc[spread, "strike_short"].astype(float)
    assert ((k2 - t.loc[spread, "spot_usd"] * (1 + m_short[spread])).abs() <= step[spread] + 1e-9).all()
    assert (k2 != t.loc[spread, "strike_long"]).all()
    probes = t["trade_type"].isin(["BULL_PROBE", "BEAR_PROBE"])
    assert probes.sum() > 100 and t.loc[probes, "size"].between(0.35, 0.6).all()
    hedges = t[t["trade_type"] == "TACTICAL_PUT"]
    day = daily.set_index("date")
    assert (hedges["confidence"].to_numpy() == day.loc[hedges["date"], "tactical_confidence"].to_numpy()).all()


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


def test_new_settings_are_read_from_the_options_desk_section():
    """``options_desk.decisions`` in trader.yaml reaches the engine (unknown keys are errors)."""
    from pipeline.config import TraderConfig

    section = {
        "fusion": {"probe_size_band": [0.35, 0.6], "probe_below_band": "skip"},
        "tactical_puts": {"medium_min_signs": 2, "high_min_signs": 4},
        "structures": {"strike_step_fraction": 0.005, "strike_step_mantissas": [1, 2, 5]},
    }
    d = TraderConfig.model_validate({"options_desk": {"decisions": section}}).options_desk.decisions
    assert d.fusion.probe_below_band == "skip" and d.tactical_puts.high_min_signs == 4
    assert strike_step([64_000.0], d.structures)[0] == 200.0  # 0.5 % of 64,000 = 320 -> 200 on a 1/2/5 ladder
    with pytest.raises(ValueError):
        TraderConfig.model_validate({"options_desk": {"decisions": {"structures": {"strike_grid_step": 5}}}})
