"""``setup_scanner.evaluation.usd_per_trade`` (seed ``evaluation.usd_per_trade``): the reports' nominal PnL is the
stake times the net return of each trade, summed."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import common
from pipeline.config import TraderConfig
from pipeline.core.setups import nominal_pnl_by

SIGNALS = pd.DataFrame(
    {
        "timeframe": ["1h", "1h", "1h", "15m"],
        "status": ["TP", "TP", "EXPIRED", "SL"],
        "net_pct": [2.0, 1.0, np.nan, -0.5],
    }
)


def test_nominal_pnl_by_hand():
    out = nominal_pnl_by(SIGNALS, ["timeframe", "status"], 250.0)
    # 1h TP: (2 % + 1 %) x 250 = 7.50 USD; EXPIRED: no trade, 0; 15m SL: -0.5 % x 250 = -1.25 USD
    got = out.set_index(["timeframe", "status"])
    assert got.loc[("1h", "TP"), "pnl_usd"] == pytest.approx(7.5) and got.loc[("1h", "TP"), "trades"] == 2
    assert got.loc[("1h", "EXPIRED"), "pnl_usd"] == 0 and got.loc[("1h", "EXPIRED"), "n"] == 1
    assert got.loc[("15m", "SL"), "pnl_usd"] == pytest.approx(-1.25) and got.loc[("1h", "TP"), "avg_net_pct"] == 1.5


def test_analyze_results_uses_the_configured_stake(monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app, setups

    runs = pd.DataFrame(
        {
            "run_id": ["g"],
            "strategy": ["setup_gated"],
            "period_start": ["2024-01-01"],
            "period_end": ["2024-06-01"],
            "metrics": [json.dumps({"total_return": 0.1})],
            "benchmark": [json.dumps({"total_return": 0.2})],
        }
    )
    monkeypatch.setattr(setups, "read", lambda sql, params=None: runs if "backtest.runs" in sql else SIGNALS)
    for usd, shown in ((100.0, "3.00"), (1000.0, "30.00")):
        cfg = TraderConfig.model_validate({"setup_scanner": {"evaluation": {"usd_per_trade": usd}}})
        monkeypatch.setattr(setups, "settings", lambda cfg=cfg: cfg)
        monkeypatch.setattr(common, "settings", lambda cfg=cfg: cfg)
        out = CliRunner().invoke(app, ["setups", "analyze-results"], env={"COLUMNS": "250"})
        assert out.exit_code == 0, out.output
        assert f"pnl_usd at {usd:,.0f} USD per trade" in out.output and shown in out.output
