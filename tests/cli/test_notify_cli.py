"""``trader notify test`` / ``status`` (issue 16): the test message goes through ``notify_test_job`` (enqueue +
deliver) to a fake Bot API on 127.0.0.1; with Telegram disabled it is stored as ``off``."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.resources.fake_telegram import FakeTelegram


def test_notify_test_sends_one_message_through_the_job(tmp_path, monkeypatch):
    from pipeline import notify
    from pipeline.cli import app, common
    from pipeline.cli import notify as cli_notify
    from pipeline.config import settings

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TEST_TG_TOKEN", "9:xyz")
    tg = FakeTelegram()
    try:
        cfg = settings().model_copy(deep=True)
        cfg.warehouse.path = str(tmp_path / "wh.duckdb")
        cfg.notify.telegram = cfg.notify.telegram.model_copy(
            update={"enabled": True, "chat_id": "-100777", "api_base": tg.url, "bot_token_env": "TEST_TG_TOKEN"}
        )
        for mod in (common, notify, cli_notify):
            monkeypatch.setattr(mod, "settings", lambda: cfg)
        out = CliRunner().invoke(app, ["notify", "test"], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "sent to chat -100777 (Telegram message id 1001)" in out.output, out.output
        assert len(tg.requests) == 1 and tg.requests[0]["chat_id"] == "-100777"
        assert (
            tg.requests[0]["path"] == "/bot9:xyz/sendMessage" and "Trader notifications work" in tg.requests[0]["text"]
        )

        out = CliRunner().invoke(app, ["notify", "status"], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "│ test │ sent   │" in out.output, out.output
    finally:
        tg.stop()
