"""Notifications (issue 16): the Telegram notifier and the ``ops.notifications`` outbox, against a fake Bot API
server on 127.0.0.1 (tests/resources/fake_telegram.py), through the real resource and httpx, on a real DuckDB file.

Time is an injected clock (``Clock``): delivery reads it and its ``sleep`` advances it, so minutes of retries and
rate limiting take no wall time. docs/decisions.md "Notifications and the outbox (issue 16)".
"""

from __future__ import annotations

import json

import pytest

from pipeline.core import messages as m
from pipeline.core.outbox import OutboxParams
from resources.notifier import MemoryNotifier, NullNotifier, TelegramNotifier, deliver, enqueue
from tests.resources.fake_telegram import FakeTelegram, markdown_v2_error
from warehouse import io

T0 = 1_800_000_000.0

#: a real gated signal: signals.setups of a full run (BTC/USDT 1h, candle 2026-04-23 03:00 UTC), the plan columns
SIGNAL = {
    "candidate_id": "BTC/USDT|1h|1776913200000|1",
    "symbol": "BTC/USDT",
    "timeframe": "1h",
    "ts": 1776913200000,
    "side": 1,
    "entry_type": "limit",
    "entry": 77696.0425,
    "sl": 76891.498975,
    "sl_pct": 1.046336,
    "tp1": 80737.96,
    "tp2": 82347.2925,
    "tp1_net_pct": 3.755151,
    "rr_tp1": 3.780923,
    "leverage": 1.0,
    "qty": 0.124294,
    "notional": 9657.158384,
    "liq_price": 388.480213,
    "validity_candles": 6,
    "p_win": 0.254886,
    "ev_pct": 0.008861,
    "threshold": 0.0,
    "threshold_source": "global",
    "gate_mode": "ev",
    "why": "EV % 0.0089 >= 0.0 (global)",
    "trend_regime": "bull",
    "volatility_level": "high",
    "model_version": "setup_meta v1",
}


class Clock:
    def __init__(self, t: float = T0):
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


@pytest.fixture
def tg():
    server = FakeTelegram()
    yield server
    server.stop()


@pytest.fixture
def con(tmp_path):
    with io.connect(str(tmp_path / "wh.duckdb")) as c:
        yield c


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("TEST_TG_TOKEN", "123:abc")


def _bot(tg, **kw) -> TelegramNotifier:
    return TelegramNotifier(
        chat_id="42", bot_token_env="TEST_TG_TOKEN", api_base=tg.url, read_timeout_s=0.3, connect_retries=0, **kw
    )


P = OutboxParams(max_attempts=3, backoff_s=5.0, backoff_cap_s=600.0, sending_lease_s=120.0, max_wait_s=0.0)
KINDS = m.NotifyKinds()


def _rows(con) -> list[dict]:
    df = con.execute("SELECT * FROM ops.notifications ORDER BY seq").df()
    return df.to_dict("records")


def _stale(i: int) -> m.Message:
    return m.data_stale(f"candles BTC/USDT 15m #{i}", f"2026-04-20 0{i % 10}:00 UTC", 3.0, 0.5)


# --------------------------------------------------------------------------- escaping and formatting (pure)


def test_markdown_v2_escaping_hand_cases():
    assert m.escape_md("BTC/USDT 1.5% (x)") == r"BTC/USDT 1\.5% \(x\)"
    assert m.escape_md("a_b*c[d]e~f`g>h#i+j-k=l|m{n}o.p!q") == r"a\_b\*c\[d\]e\~f\`g\>h\#i\+j\-k\=l\|m\{n\}o\.p\!q"
    assert m.escape_md("C:\\x") == "C:\\\\x"  # a backslash is escaped too
    assert m.escape_md("EV % 0.0089 >= 0.0") == r"EV % 0\.0089 \>\= 0\.0"
    assert m.escape_code("a`b\\c.d") == "a\\`b\\\\c.d"  # in pre/code only ` and \
    assert markdown_v2_error(m.escape_md("any (text) with - reserved. chars!")) is None
    assert markdown_v2_error("1.5") is not None  # the checker of the fake server is not a no-op


def test_new_signal_message_from_a_real_row():
    msg = m.new_signal(SIGNAL)
    assert msg.dedup_key == "signal:BTC/USDT|1h|1776913200000|1" and msg.kind == "signal"
    lines = msg.plain.splitlines()
    assert lines[0] == "New signal: LONG BTC/USDT 1h"
    # prices at 8 significant digits: 77696.0425 is 77696.042499999996 as a double
    assert "Entry: 77,696.042 (limit, valid 6 candles)" in lines
    assert "SL: 76,891.499 (1.05 % away)" in lines
    assert "TP1 / TP2: 80,737.96 / 82,347.292 (TP1 net +3.76 %, R:R 3.781)" in lines
    assert "Leverage: 1x (liquidation 388.48021)" in lines
    assert "Size: 0.124294 BTC = 9,657.16 notional" in lines
    assert "p(win): 25.5 %" in lines and "EV: +0.009 %" in lines
    assert "Gate: EV threshold 0 % (global)" in lines and "Why: EV % 0.0089 >= 0.0 (global)" in lines
    assert "Candle: 1h closed 2026-04-23 04:00 UTC" in lines and lines[-1] == f"ref {m.ref(msg.dedup_key)}"
    assert msg.markdown.splitlines()[0] == "*New signal: LONG BTC/USDT 1h*"
    assert r"*Entry:* 77,696\.042 \(limit, valid 6 candles\)" in msg.markdown
    assert markdown_v2_error(msg.markdown) is None
    closed = m.trade_closed({**SIGNAL, "status": "SL", "pnl": -54.656331, "net_pct": -1.163078, "entry_price": 95.025})
    assert closed.plain.splitlines()[:2] == ["❌ SL: LONG BTC/USDT 1h", "PnL: -54.66 (-1.16 % net)"]
    assert closed.dedup_key == "trade_closed:BTC/USDT|1h|1776913200000|1:SL"
    for msg in (
        closed,
        m.trade_closed({**SIGNAL, "status": "EXPIRED"}),
        m.risk_state(
            "setup_scanner", "ACTIVE", "HALTED", 1776913200000, "drawdown -20.1 % beyond -20 %", drawdown_pct=-20.1
        ),
        _stale(1),
        m.run_failure("live_15m_job", "abc-123", "KeyError: 'x' (step a.b)"),
    ):
        assert markdown_v2_error(msg.markdown) is None, msg.markdown


def test_kind_modes_read_yaml_on_off():
    k = m.NotifyKinds.model_validate({"signal": False, "data_stale": "silent", "run_failure": True})
    assert (k.signal, k.data_stale, k.run_failure, k.mode("test")) == ("off", "silent", "on", "on")


def test_telegram_config_and_the_notifier_it_builds():
    from pydantic import ValidationError

    from pipeline.config import TelegramConfig
    from resources.notifier import build_notifier

    with pytest.raises(ValidationError, match="chat_id is required"):
        TelegramConfig(enabled=True)
    on = TelegramConfig.model_validate({"enabled": True, "chat_id": 123456789, "api_base": "http://127.0.0.1:9"})
    bot = build_notifier(on)
    assert (
        isinstance(bot, TelegramNotifier) and bot.chat_id == "123456789" and bot.bot_token_env == "TELEGRAM_BOT_TOKEN"
    )
    assert "token" not in {k for k in bot.model_dump() if k != "bot_token_env"}  # the token itself is never config
    assert isinstance(build_notifier(TelegramConfig()), NullNotifier)


# --------------------------------------------------------------------------- delivery through the fake server


def test_delivery_dedup_and_modes(tg, con, token):
    clock, bot = Clock(), _bot(tg)
    kinds = m.NotifyKinds(data_stale="silent", run_failure="off")
    sig = m.new_signal(SIGNAL)
    assert enqueue(con, sig, kinds, now=clock()) is True
    assert enqueue(con, m.new_signal(dict(SIGNAL)), kinds, now=clock() + 5) is False  # same event again: one row
    enqueue(con, _stale(1), kinds, now=clock())
    enqueue(con, m.run_failure("j", "r1", "boom"), kinds, now=clock())
    rep = deliver(con, bot, P, clock=clock, sleep=clock.sleep)
    assert rep.delivered == 2 and rep.requests == 2 and len(tg.requests) == 2
    first = tg.requests[0]
    assert first["path"] == "/bot123:abc/sendMessage" and first["chat_id"] == "42"
    assert (
        first["parse_mode"] == "MarkdownV2" and first["text"] == sig.markdown and first["disable_notification"] is False
    )
    assert tg.requests[1]["disable_notification"] is True  # data_stale: silent
    rows = {r["kind"]: r for r in _rows(con)}
    assert rows["signal"]["status"] == "sent" and rows["signal"]["telegram_message_id"] == 1001
    assert rows["data_stale"]["status"] == "silent" and rows["run_failure"]["status"] == "off"
    assert json.loads(rows["signal"]["payload"])["candidate_id"] == SIGNAL["candidate_id"]
    assert deliver(con, bot, P, clock=clock, sleep=clock.sleep).requests == 0 and len(tg.requests) == 2
    # the null notifier (Telegram disabled) stores messages as off and makes no request
    enqueue(con, _stale(2), m.NotifyKinds(), now=clock())
    assert deliver(con, NullNotifier(), P, clock=clock).off == 1
    mem = MemoryNotifier(chat_id="7")
    enqueue(con, _stale(3), m.NotifyKinds(), now=clock())
    assert deliver(con, mem, P, clock=clock).delivered == 1 and mem.sent[0]["parse_mode"] == "MarkdownV2"


def test_429_retry_after_is_honoured_for_the_whole_chat(tg, con, token):
    clock, bot = Clock(), _bot(tg)
    tg.script = [("429", 7)]
    enqueue(con, _stale(1), KINDS, now=clock())
    enqueue(con, _stale(2), KINDS, now=clock() + 1)
    rep = deliver(con, bot, P, clock=clock, sleep=clock.sleep)
    assert rep.outcomes == ["rate_limited"] and rep.next_due == T0 + 7  # the second message waits too
    clock.t = T0 + 6.9
    assert deliver(con, bot, P, clock=clock, sleep=clock.sleep).requests == 0
    clock.t = T0 + 7
    assert deliver(con, bot, P, clock=clock, sleep=clock.sleep).delivered == 2
    assert len(tg.requests) == 3 and [r["status"] for r in _rows(con)] == ["sent", "sent"]
    att = con.execute("SELECT outcome, retry_after FROM ops.notification_attempts ORDER BY started_at").fetchall()
    assert att[0] == ("rate_limited", 7.0)


def test_at_most_20_requests_a_minute_per_chat_across_restarts(tg, con, token, tmp_path):
    clock = Clock()
    for i in range(25):
        enqueue(con, _stale(i), KINDS, now=clock())
    assert deliver(con, _bot(tg), P, clock=clock, sleep=clock.sleep).requests == 20
    con.close()
    # a restarted sender (new connection, new notifier): the spent tokens are read from ops.notification_attempts
    with io.connect(str(tmp_path / "wh.duckdb")) as con2:
        clock.t = T0 + 59.9
        assert deliver(con2, _bot(tg), P, clock=clock, sleep=clock.sleep).requests == 0
        clock.t = T0 + 60
        assert deliver(con2, _bot(tg), P, clock=clock, sleep=clock.sleep).requests == 5
        # one pass allowed to wait sleeps until the next token instead of returning
        clock2 = Clock(T0 + 1000)
        for i in range(25, 50):
            enqueue(con2, _stale(i), KINDS, now=clock2())
        rep = deliver(con2, _bot(tg), P, clock=clock2, sleep=clock2.sleep, max_wait_s=120)
        assert rep.delivered == 25 and clock2.t == T0 + 1060
        times = sorted(r[0] for r in con2.execute("SELECT epoch(started_at) FROM ops.notification_attempts").fetchall())
    assert len(times) == 50 and max(sum(1 for t in times if a <= t < a + 60) for a in times) == 20


def test_plain_text_fallback_on_parse_error(tg, con, token):
    clock, bot = Clock(), _bot(tg)
    tg.script = ["parse"]
    msg = m.new_signal(SIGNAL)
    enqueue(con, msg, KINDS, now=clock())
    rep = deliver(con, bot, P, clock=clock, sleep=clock.sleep)
    assert rep.outcomes == ["parse_error", "sent"] and rep.delivered == 1
    assert tg.requests[1]["text"] == msg.plain and "parse_mode" not in tg.requests[1]
    r = _rows(con)[0]
    assert (r["status"], r["format"], r["attempts"], r["failures"]) == ("sent", "plain", 2, 0)


def test_500_backs_off_then_fails_keeping_the_error(tg, con, token):
    clock, bot = Clock(), _bot(tg)
    tg.script = ["500"] * 5
    enqueue(con, m.run_failure("j", "r9", "boom"), KINDS, now=clock())
    deliver(con, bot, P, clock=clock, sleep=clock.sleep)
    r = _rows(con)[0]
    assert (r["status"], r["failures"]) == ("pending", 1) and r["last_error"] == "500 Internal Server Error"
    clock.t = T0 + 4.9
    assert deliver(con, bot, P, clock=clock, sleep=clock.sleep).requests == 0  # backoff 5 s
    rep = deliver(con, bot, P, clock=clock, sleep=clock.sleep, max_wait_s=1000)  # sleeps 5 s, then 10 s
    assert rep.outcomes == ["error", "error"] and clock.slept == [pytest.approx(0.1), 10.0]
    r = _rows(con)[0]
    assert (r["status"], r["failures"], r["attempts"]) == ("failed", 3, 3) and "500" in r["last_error"]
    assert len(tg.requests) == 3


def test_timeout_is_an_unknown_outcome_resent_or_not_by_kind(tg, con, token):
    clock, bot = Clock(), _bot(tg)
    tg.script = [("timeout", 0.8), ("timeout", 0.8)]
    sig = m.new_signal(SIGNAL)
    enqueue(con, sig, KINDS, now=clock())
    enqueue(con, _stale(1), KINDS, now=clock() + 1)
    rep = deliver(con, bot, P, clock=clock, sleep=clock.sleep, max_wait_s=100)
    # the signal (at-least-once) is resent after 5 s marked as a possible repeat; the staleness alert
    # (at-most-once) is not resent
    assert rep.outcomes == ["ambiguous", "ambiguous", "sent"]
    assert tg.requests[2]["text"].startswith(r"_♻ possible repeat of ref " + m.ref(sig.dedup_key))
    assert markdown_v2_error(tg.requests[2]["text"]) is None
    rows = {r["kind"]: r for r in _rows(con)}
    assert rows["signal"]["status"] == "sent" and rows["signal"]["maybe_sent"]
    assert rows["data_stale"]["status"] == "failed" and "ReadTimeout" in rows["data_stale"]["last_error"]


class SimulatedCrash(BaseException):
    """The process dies (not an Exception: nothing in deliver may catch it)."""


class CrashAfterSend(TelegramNotifier):
    def send(self, text, *, parse_mode, disable_notification):
        super().send(text, parse_mode=parse_mode, disable_notification=disable_notification)
        raise SimulatedCrash  # the request reached Telegram; the answer is never recorded


def test_crash_between_send_and_record_follows_the_per_kind_policy(tg, con, token, tmp_path):
    clock = Clock()
    sig = m.new_signal(SIGNAL)
    enqueue(con, sig, KINDS, now=clock())
    enqueue(con, _stale(1), KINDS, now=clock())
    crashing = CrashAfterSend(chat_id="42", bot_token_env="TEST_TG_TOKEN", api_base=tg.url, connect_retries=0)
    for _ in range(2):
        with pytest.raises(SimulatedCrash):
            deliver(con, crashing, P, clock=clock, sleep=clock.sleep)
    assert len(tg.requests) == 2 and {r["status"] for r in _rows(con)} == {"sending"}
    con.close()
    with io.connect(str(tmp_path / "wh.duckdb")) as con2:  # the restarted process
        clock.t = T0 + 60  # within the lease: a 'sending' row is not touched (its sender may still be alive)
        assert deliver(con2, _bot(tg), P, clock=clock, sleep=clock.sleep).requests == 0
        clock.t = T0 + 121
        rep = deliver(con2, _bot(tg), P, clock=clock, sleep=clock.sleep)
        assert (rep.requeued_orphans, rep.failed_orphans, rep.requests) == (1, 1, 1)
        # at-least-once (signal): sent again, visibly flagged with the same ref; at-most-once (staleness): not resent
        assert tg.requests[2]["text"].startswith(r"_♻ possible repeat of ref " + m.ref(sig.dedup_key))
        assert m.ref(sig.dedup_key) in tg.requests[0]["text"]
        rows = {r["kind"]: r for r in _rows(con2)}
        assert rows["signal"]["status"] == "sent" and rows["signal"]["attempts"] == 2
        assert rows["data_stale"]["status"] == "failed" and "at-most-once" in rows["data_stale"]["last_error"]
        outcomes = con2.execute("SELECT outcome FROM ops.notification_attempts ORDER BY started_at").fetchall()
        assert [o[0] for o in outcomes] == ["unknown", "unknown", "sent"]


def test_outage_keeps_everything_pending_then_delivers(tg, con, token):
    clock, bot = Clock(), _bot(tg)
    tg.stop()  # Telegram unreachable: connection refused
    keys = []
    for i in range(3):
        msg = m.new_signal({**SIGNAL, "candidate_id": f"c{i}"})
        keys.append(msg.dedup_key)
        enqueue(con, msg, KINDS, now=clock() + i)
    for _ in range(12):  # hours of retries, far beyond max_attempts
        deliver(con, bot, P, clock=clock, sleep=clock.sleep)
        clock.t += 900
    rows = _rows(con)
    assert [r["status"] for r in rows] == ["pending"] * 3 and all(r["failures"] == 0 for r in rows)
    assert all(r["attempts"] >= 10 and "ConnectError" in r["last_error"] for r in rows)
    tg.start()  # back on the same port
    rep = deliver(con, bot, P, clock=clock, sleep=clock.sleep)
    assert rep.delivered == 3 and len(tg.requests) == 3
    assert [json.loads(_r["payload"])["candidate_id"] for _r in _rows(con)] == ["c0", "c1", "c2"]
    assert [r["text"].splitlines()[-1] for r in tg.requests] == [f"ref `{m.ref(k)}`" for k in keys]


# the options desk's real decision of 2025-10-08 (signals.options_daily / options_trades of a full run)
OPTIONS_DAY = {
    "date": "2025-10-08",
    "score": 3,
    "state": "bull_probe",
    "confidence": "medium",
    "state_reason": "MDIA neutral + whale sponsored + MVRV call_confirm",
    "mdia_regime": "neutral",
    "mdia_source": "proxy:realized_cap_age",
    "whale_regime": "strategic_accum",
    "whale_source": "proxy:exchange_supply",
    "mvrv_ls_regime": "call_confirm_recovery",
    "mvrv_ls_source": "proxy:mvrv_minus_sth155",
    "overlay_reason": "none",
    "size_mult": 1.0,
    "dte_mult": 1.0,
    "p_long": 0.61,
    "p_long_version": "options_p_long v3",
    "p_short": float("nan"),
    "signal_option_call": 1,
    "signal_option_put": float("nan"),
    "model_gate_mode": "display",
}
OPTIONS_TRADES = [
    (
        "BULL_PROBE",
        1,
        "cooldown",
        "Fusion: bull_probe",
        "medium",
        0.5,
        "CALL_SPREAD",
        123000.0,
        136000.0,
        "2025-11-07",
        30,
    ),
    (
        "TACTICAL_PUT",
        -1,
        "taken",
        "Tactical put: MVRV-60d near peak",
        "low",
        0.4,
        "TACTICAL_PUT",
        114000.0,
        None,
        "2025-10-24",
        16,
    ),
]


def test_options_decision_is_the_cli_block_in_a_pre_entity(tg, con, token):
    import pandas as pd

    from pipeline.core import options_explain as ox

    cols = "trade_type direction cooldown_status reason confidence size structure strike_long strike_short expiry dte"
    trades = pd.DataFrame(OPTIONS_TRADES, columns=cols.split()).assign(expiry=lambda d: pd.to_datetime(d["expiry"]))
    r = pd.Series(OPTIONS_DAY)
    cand = (0.262, "1", '["PASS auc", "FAIL brier 0.21896 < base-rate brier 0.21510"]')
    block = ox.decision_block(
        r,
        trades,
        age=ox.age_lines("2025-10-08", "2025-10-08", pd.Timestamp("2025-10-09"), pd.Timestamp("2025-10-09"), 2),
        models=ox.model_lines(
            r, {"p_long": "options_p_long", "p_short": "options_p_short"}, (0.5, 0.5), "display", {"p_short": cand}
        ),
    )
    assert block[1] == "SIGNAL ANALYSIS: 2025-10-08"
    assert (
        "Data: latest stored day 2025-10-08 (complete at 2025-10-09 00:00 UTC, 1 day behind today, 2025-10-09 UTC)"
        in block
    )
    assert "p_long  = 0.610   (options_p_long v3 @champion)" in block
    assert (
        "p_short = 0.262   (candidate options_p_short v1, NOT promoted: FAIL brier 0.21896 < base-rate brier "
        "0.21510; not used by decisions)"
    ) in block
    assert "signal_option_call = 1   (champion p_long >= 0.5)" in block and "   Score: +3" in block
    assert block[-14:-12] == ["", "⏸ CALL (BULL_PROBE, cooldown)"]
    assert "   Strikes: 123,000 / 136,000   Expiry: 2025-11-07 (30 DTE)" in block
    assert block[-7:] == [
        "",
        "✅ PUT (TACTICAL_PUT, taken)",
        "   Reason: Tactical put: MVRV-60d near peak",
        "   Confidence: low",
        "   Size: 0.40",
        "   Structures: TACTICAL_PUT",
        "   Strikes: 114,000   Expiry: 2025-10-24 (16 DTE)",
    ]
    msg = m.options_decision("2025-10-08", block, {"state": "bull_probe"})
    assert msg.plain.splitlines()[1:-1] == block and msg.dedup_key == "options_decision:2025-10-08"
    assert msg.markdown.startswith(r"*Options desk decision 2025\-10\-08*" + "\n```\n=====")
    enqueue(con, msg, KINDS, now=T0)
    assert deliver(con, _bot(tg), P, clock=Clock(), sleep=Clock().sleep).outcomes == ["sent"]  # parsed as MarkdownV2
    assert tg.requests[0]["text"] == msg.markdown


_SENDER = """
import sys, time
from pipeline.core.outbox import OutboxParams
from resources.notifier import TelegramNotifier, deliver
from warehouse import io

with io.connect(sys.argv[1]) as con:
    bot = TelegramNotifier(chat_id="42", bot_token_env="TEST_TG_TOKEN", api_base=sys.argv[2], read_timeout_s=20)
    deliver(con, bot, OutboxParams(max_wait_s=0), clock=lambda: float(sys.argv[3]))
"""


def test_kill_9_while_the_request_is_in_flight(tg, tmp_path, token):
    """A real crash: the sender process is killed (SIGKILL) after Telegram received the request and before the
    answer came back; the restarted sender resends the at-least-once signal once, flagged as a possible repeat."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = str(tmp_path / "wh.duckdb")
    sig = m.new_signal(SIGNAL)
    with io.connect(path) as c:
        enqueue(c, sig, KINDS, now=T0)
    tg.script = [("timeout", 5.0)]  # Telegram holds the answer
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _SENDER, path, tg.url, str(T0)], env=env)
    try:
        deadline = time.time() + 30
        while not tg.requests and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(tg.requests) == 1, "the sender did not reach the fake server"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with io.connect(path) as c:
        assert [r["status"] for r in _rows(c)] == ["sending"]
        clock = Clock(T0 + 121)
        rep = deliver(c, _bot(tg), P, clock=clock, sleep=clock.sleep)
        assert (rep.requeued_orphans, rep.delivered, len(tg.requests)) == (1, 1, 2)
        assert tg.requests[1]["text"].startswith(r"_♻ possible repeat of ref " + m.ref(sig.dedup_key))
        assert [r["status"] for r in _rows(c)] == ["sent"]
