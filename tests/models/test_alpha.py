"""Alpha models (models/alpha.py): labels, rank IC, the IC gate, the point-in-time expected-return scale and a purged
walk-forward fit on real hourly bars of five pairs whose predictions do not change when history is truncated."""

import math

import numpy as np
import pandas as pd
import pytest

from models.alpha import (
    AlphaModelConfig,
    AlphaPromotion,
    add_labels,
    calibration_deciles,
    fit_alpha,
    fold_scales,
    gate,
    ic_stats,
    labelled_rows,
    rank_ic,
)
from models.splits import WalkForwardConfig
from pipeline.core.alpha_features import alpha_features
from tests.conftest import real_ohlcv

H = 3_600_000


def test_labels_hand_case_with_a_gap():
    ts = np.array([0, 1, 2, 3, 5, 6], dtype=np.int64) * H  # bar 4 is missing
    f = pd.DataFrame({"symbol": "X", "ts": ts, "close": [100.0, 110, 121, 100, 90, 99], "rvol_24h": 0.05})
    out = add_labels(f, horizon=2, step_ms=H, clip=5.0)
    assert out["y"].iloc[0] == pytest.approx(math.log(121 / 100) / (0.05 * math.sqrt(2)))
    assert out["label_end_ts"].iloc[0] == 2 * H
    # rows 2 and 3 would need bars 4 and 5 two hours later: bar 4 is missing, so row 2 is unlabelled; row 3 -> bar 5
    assert np.isnan(out["y"].iloc[2]) and out["label_end_ts"].iloc[2] == -1
    assert out["y"].iloc[3] == pytest.approx(math.log(90 / 100) / (0.05 * math.sqrt(2)))
    assert out["label_end_ts"].iloc[-2:].tolist() == [-1, -1]  # no future bars yet
    big = add_labels(f.assign(rvol_24h=1e-4), horizon=2, step_ms=H, clip=5.0)
    assert big["y"].iloc[0] == 5.0  # clipped


def test_rank_ic_and_block_t_statistic_hand_case():
    pred = np.tile(np.arange(5.0), 4)
    y = np.r_[np.arange(5.0), np.arange(5.0)[::-1], np.arange(5.0), [0, 1, 2, 4, 3]]
    f = pd.DataFrame({"ts": np.repeat(np.arange(4) * H, 5), "pred": pred, "y": y})
    ic = rank_ic(f, min_assets=5)
    assert ic.tolist() == pytest.approx([1.0, -1.0, 1.0, 0.9])
    assert rank_ic(f.iloc[:-1], min_assets=5).index.tolist() == [0, H, 2 * H]  # the last hour has 4 assets
    s = ic_stats(ic, horizon=2)  # blocks of 2 hours: means 0 and 0.95
    blocks = np.array([0.0, 0.95])
    assert s["ic_mean"] == pytest.approx(0.475)
    assert s["ic_t"] == pytest.approx(blocks.mean() / (blocks.std(ddof=1) / math.sqrt(2)))
    ok, reasons = gate(s, AlphaPromotion(min_ic=0.4, min_ic_t=0.5, min_oos_hours=4))
    assert ok and len(reasons) == 3
    ok, reasons = gate(s, AlphaPromotion(min_ic=0.4, min_ic_t=2.0, min_oos_hours=4))
    assert not ok and reasons[2].startswith("FAIL IC t-stat")


def test_fold_scales_use_only_labels_ended_before_the_fold():
    class FM:
        def __init__(self, fold, test_start):
            self.fold, self.test_start = fold, test_start

    s = pd.DataFrame(
        {
            "fold": [0, 0, 0, 1, 1, 1],
            "pred": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
            "y": [0.5, 1.0, 1.5, 3.0, 6.0, 9.0],
            "label_end_ts": [10, 20, 30, 40, 50, 60],
        }
    )
    out = fold_scales(s, [FM(0, 0), FM(1, 35), FM(2, 55), FM(3, 100)], min_rows=2, bounds=(0.0, 5.0))
    assert math.isnan(out[0])  # no earlier out-of-sample rows
    assert out[1] == pytest.approx(0.5)  # fold 0's rows only
    # fold 2 starts at 55: fold 1's row whose label ends at 60 is not known yet -> the OLS slope over 3 + 2 rows
    assert out[2] == pytest.approx(np.polyfit([1, 2, 3, 1, 2], [0.5, 1, 1.5, 3, 6], 1)[0])
    assert 0.5 < out[3] <= 5.0
    d = calibration_deciles(s.assign(pred=np.arange(6.0)), bins=3)
    assert d["n"].tolist() == [2, 2, 2] and d["pred_mean"].tolist() == [0.5, 2.5, 4.5]


@pytest.fixture(scope="module")
def five_pairs():
    lo, hi = 1_609_459_200_000, 1_622_505_600_000  # 2021-01-01 .. 2021-06-01
    frames = []
    for i, s in enumerate(["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOGE/USDT"]):
        o = real_ohlcv(s, "1h")
        o = o[(o["ts"] >= lo) & (o["ts"] < hi)].reset_index(drop=True)
        frames.append(alpha_features(o, 1 + i // 3).assign(symbol=s))
    return pd.concat(frames, ignore_index=True)


def test_walk_forward_fit_is_point_in_time_on_real_bars(five_pairs):
    cfg = AlphaModelConfig(
        name="t",
        horizon_bars=6,
        train_stride=4,  # labels of 6 bars overlap at a stride of 4: purging has work to do
        params={"n_estimators": 15, "num_leaves": 7, "min_child_samples": 100},
        walk_forward=WalkForwardConfig(
            train_window="45d", test_window="20d", purge="0", embargo="6", min_calibration_rows=500
        ),
    )
    fit = fit_alpha(five_pairs, cfg, H)
    # the count the retrain policy compares, without a fit, is the fit's own
    assert labelled_rows(five_pairs, cfg, H) == fit.fit.labelled_rows > 0
    folds = fit.fit.folds
    assert len(folds) >= 5
    s = fit.scores
    for f in folds[1:]:  # purge + embargo: every training label ended an embargo before its fold's test window
        assert f.n_purged > 0 and f.train_end < f.test_start - 6 * H
    first = folds[0].test_start
    assert s.loc[s["ts"] < first, "pred"].isna().all() and s.loc[s["ts"] >= first, "pred"].notna().all()
    assert s.loc[s["fold"] == 0, "pred_cal"].isna().all()  # no earlier out-of-sample rows to scale with
    assert s.loc[s["fold"] >= 2, "pred_cal"].notna().all()
    assert fit.ic_summary["n_hours"] > 1000 and math.isfinite(fit.ic_summary["ic_mean"])
    # truncated history reproduces every prediction up to the cut (labels after it are unknown there)
    cut = int(s["ts"].quantile(0.8))
    part = fit_alpha(five_pairs[five_pairs["ts"] <= cut], cfg, H).scores
    merged = part.merge(s, on=["symbol", "ts"], suffixes=("_part", ""))
    assert len(merged) == len(part)
    np.testing.assert_allclose(merged["pred_part"], merged["pred"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(merged["pred_cal_part"], merged["pred_cal"], rtol=1e-12, equal_nan=True)


def test_a_partial_horizon_section_keeps_its_horizon():
    from models.alpha import AlphaModelsConfig

    m = AlphaModelsConfig(h6={"min_assets": 2}, h24={"label_clip": 4.0})
    assert (m.h6.name, m.h6.horizon_bars, m.h6.min_assets) == ("alpha_6h", 6, 2)
    assert (m.h24.name, m.h24.horizon_bars, m.h24.label_clip) == ("alpha_24h", 24, 4.0)
