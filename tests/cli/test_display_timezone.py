"""``app.timezone`` (seed: "used for scheduling and display"): the CLI shows times of day in the configured zone
(column header names it); calendar days and the UTC default are unchanged."""

import pandas as pd
import pytest

from pipeline.cli import common
from pipeline.config import TraderConfig


def test_local_times_converts_times_of_day_only():
    df = pd.DataFrame(
        {
            "signal_time": pd.to_datetime([1_704_067_200_000, 1_704_070_800_000], unit="ms"),  # 2024-01-01 00:00, 01:00
            "day": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "n": [1, 2],
        }
    )
    assert common.local_times(df, "UTC") is df
    out = common.local_times(df, "Asia/Tokyo")
    assert list(out.columns) == ["signal_time (Asia/Tokyo)", "day", "n"]
    assert out["signal_time (Asia/Tokyo)"].tolist() == [
        pd.Timestamp("2024-01-01 09:00"),
        pd.Timestamp("2024-01-01 10:00"),
    ]
    assert out["day"].equals(df["day"])


def test_db_inspect_prints_times_in_app_timezone(monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app, setups

    frames = {
        "count": pd.DataFrame({"n": [3], "first": [1_704_067_200_000], "last": [1_704_070_800_000]}),
        "status": pd.DataFrame({"status": ["TP"], "n": [3]}),
    }
    monkeypatch.setattr(
        setups, "read", lambda sql, params=None: frames["count" if "count(*) AS n," in sql else "status"]
    )
    for tz, shown in (("UTC", "2024-01-01 01:00:00"), ("America/New_York", "2023-12-31 20:00:00")):
        cfg = TraderConfig.model_validate({"app": {"timezone": tz}})
        monkeypatch.setattr(common, "settings", lambda cfg=cfg: cfg)
        out = CliRunner().invoke(app, ["setups", "db-inspect"], env={"COLUMNS": "250"})
        assert out.exit_code == 0, out.output
        assert shown in out.output and (f"last ({tz})" in out.output) == (tz != "UTC")


def test_unknown_timezone_is_a_config_error():
    with pytest.raises(ValueError, match="not an IANA time zone"):
        TraderConfig.model_validate({"app": {"timezone": "Mars/Olympus"}})
