"""MLflow links in Dagster metadata open the configured MLflow UI (issue 14 item 4)."""

import pytest

from pipeline.config import load_config
from pipeline.definitions import build_resources


@pytest.mark.parametrize(
    "mlflow_section,expected",
    [
        ("", "http://127.0.0.1:5000"),  # `mlflow ui`'s default address
        ("  ui_url: http://mlflow.lan:5005/\n", "http://mlflow.lan:5005"),
        ("  tracking_uri: https://tracking.example:8443\n", "https://tracking.example:8443"),  # a server is its UI
        ("  tracking_uri: https://t.example\n  ui_url: http://ui.example\n", "http://ui.example"),
    ],
)
def test_run_links_follow_the_configured_ui(tmp_path, monkeypatch, mlflow_section, expected):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "trader.yaml").write_text("mlflow:\n" + (mlflow_section or "  ui_url: null\n"))
    cfg = load_config(tmp_path / "trader.yaml")
    assert cfg.mlflow.ui_url == expected
    url = build_resources(cfg)["mlflow"].run_url("7", "abc123")
    assert url == f"{expected}/#/experiments/7/runs/abc123?workflowType=machine_learning"  # the ML view (item 6)
