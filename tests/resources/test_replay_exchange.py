"""The replay exchange (resources/replay_exchange.py) through ccxt's real ``binance`` code on 127.0.0.1, on the real
candle files: markets (spot and USDT-M), paging, equality with the files (native 1h, 15m resampled from 1m), the
simulated clock (hand-computed), the forming candle, ``exchange.market_type`` and the overlap re-fetch."""

from __future__ import annotations

import time

import ccxt
import numpy as np
import pandas as pd
import pytest

from assets.ingest import ingest_exchange_slice
from pipeline.core.candles import resample_ohlcv
from resources.exchange import ExchangeSource
from resources.replay_exchange import ReplayData, ReplayError, SimClock, main, parse_utc, start_replay
from tests.conftest import SHARED, real_ohlcv
from warehouse import io

H = 3_600_000
START = "2026-04-20T10:30"  # mid-candle: the 10:00 1h candle is forming (two closed 15m bars in it)
START_MS = 1776681000000  # 2026-04-20 10:30 UTC = 20,563 days * 86,400,000 + 10.5 h * 3,600,000


class Wall:
    """A wall clock the test moves by hand (seconds)."""

    def __init__(self, t: float = 1_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def data():
    return ReplayData(SHARED)  # loaded lazily, shared by the module's servers (one read of each file)


@pytest.fixture
def replay(data):
    wall = Wall()
    h = start_replay(data, START, 600.0, wall=wall)
    h.wall = wall
    yield h
    h.stop()


def _src(base, **kw) -> ExchangeSource:
    return ExchangeSource(**{"api_base_url": base, "page_limit": 100, "rate_limit_ms": 1, "retry_wait_s": 0.01, **kw})


def _file(symbol, tf, a, b, folder="binance"):
    df = real_ohlcv(symbol, tf, folder)
    return df[(df.ts >= a) & (df.ts < b)][["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


def _sync(src, symbol, tf, since):
    pages = []
    rep = src.sync_ohlcv(symbol, tf, since, pages.append)
    return rep, pd.concat(pages, ignore_index=True)


def test_clock_arithmetic_hand_computed():
    """now_sim = start + (wall_now - wall_started) * speed: 2026-04-20 10:30 UTC, speed 600."""
    assert parse_utc(START) == START_MS == parse_utc("2026-04-20T12:30+02:00")
    wall = Wall(1_000.0)
    c = SimClock(START_MS, 600.0, wall)
    assert c.now_ms() == START_MS
    wall.t = 1_001.5  # 1.5 s * 600 = 900 s = one 15m candle
    assert c.now_ms() == START_MS + 900_000
    wall.t = 1_006.0  # 6 s * 600 = 3,600 s: 11:30
    assert c.now_ms() == START_MS + H == parse_utc("2026-04-20T11:30")
    assert SimClock(START_MS, 0.5, Wall(0.0)).now_ms() == START_MS
    for bad in (0, -1, float("nan")):
        with pytest.raises(ReplayError, match="speed must be a finite number > 0"):
            SimClock(START_MS, bad, wall)


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_spot_and_swap_markets_load_through_ccxt(replay, market_type):
    src = _src(replay.base_url, market_type=market_type)
    ex = src.client()
    assert all(u.startswith(replay.base_url) for u in ex.urls["api"].values())  # spot, fapi, dapi, sapi hosts
    markets = ex.load_markets()
    sym = src.market_symbol("BTC/USDT")
    assert sym == ("BTC/USDT" if market_type == "spot" else "BTC/USDT:USDT")
    assert len(markets) == 10 and sym in markets
    m = markets[sym]
    assert m["type"] == market_type and m["id"] == "BTCUSDT"
    if market_type == "swap":
        assert m["linear"] and m["settle"] == "USDT" and m["contractSize"] == 1
    api = "/api/v3" if market_type == "spot" else "/fapi/v1"
    assert [p for p, _ in replay.exchange.requests] == [f"{api}/exchangeInfo"]
    assert src.now_ms() == START_MS and replay.exchange.requests[-1][0] == f"{api}/time"
    assert src.candle_limit() == 100 and _src(None, market_type=market_type, page_limit=None).candle_limit() == (
        1000 if market_type == "spot" else 500
    )  # ccxt's documented fetchOHLCV limits of binance spot / USDT-M


def test_pairs_are_listed_from_their_first_candle(data):
    with start_replay(data, "2020-01-01", 1.0) as h:  # SOL, DOT, AVAX open in Aug/Sep 2020
        ex = _src(h.base_url).client()
        assert "SOL/USDT" not in ex.load_markets() and len(ex.markets) == 7


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_sync_pages_forward_and_equals_the_file_1h(replay, market_type):
    since = parse_utc("2026-04-12")
    rep, got = _sync(_src(replay.base_url, market_type=market_type), "BTC/USDT", "1h", since)
    want = _file("BTC/USDT", "1h", since, START_MS - 30 * 60_000)  # closed at 10:30: up to 09:00
    assert len(want) == 8 * 24 + 10 and rep.pages == 3 and rep.rows == len(want)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)  # exact: the files' decimal strings round-trip
    kl = [q for p, q in replay.exchange.requests if p.endswith("/klines")]
    assert [int(q["startTime"]) for q in kl] == [since, since + 100 * H, since + 200 * H]
    assert all(p.startswith("/api/v3" if market_type == "spot" else "/fapi/v1") for p, _ in replay.exchange.requests)


def test_forming_candle_is_sent_like_binance_and_dropped_by_the_source(replay):
    ex = _src(replay.base_url).client()
    rows = ex.fetch_ohlcv("BTC/USDT", "1h", since=START_MS - 3 * H, limit=10)
    assert [r[0] for r in rows] == [START_MS - 2.5 * H, START_MS - 1.5 * H, START_MS - 0.5 * H]  # open >= startTime
    m15 = _file("BTC/USDT", "15m", START_MS - 30 * 60_000, START_MS)  # the two closed 15m bars of the 10:00 hour
    full = _file("BTC/USDT", "1h", START_MS - 30 * 60_000, START_MS)
    part = rows[-1]
    assert part[1:] == [m15.open[0], m15.high.max(), m15.low.min(), m15.close[1], m15.volume.sum()]
    assert part[4] != full.close[0]  # not the final candle: nothing after now leaks
    _, got = _sync(_src(replay.base_url), "BTC/USDT", "1h", START_MS - 3 * H)
    assert int(got.ts.max()) == START_MS - 1.5 * H  # the project's source keeps closed candles only


def test_nothing_at_or_after_now_is_released_and_the_clock_releases_new_candles(replay):
    ex = replay.exchange
    walls = {1_000.0: 0, 1_002.0: 1_200_000, 1_003.0: 1_800_000, 1_003.0 + 2**-10: 1_800_585, 1_005.75: 3_450_000}
    for wall, ahead in (walls | {1_006.0: 3_600_000}).items():  # incl. exactly on 11:00 and 0.585 s after it
        replay.wall.t = wall
        now = START_MS + ahead  # (wall - 1000 s) * 600 * 1000 ms, by hand
        assert ex.clock.now_ms() == now
        for tf, step in (("15m", 900_000), ("1h", H), ("4h", 4 * H)):
            ts = np.array([r[0] for r in ex.klines("BTC/USDT", tf, now, now - 12 * step, None, 1000)])
            closed = ts[ts + step <= now]
            assert (ts <= now).all() and len(ts) - len(closed) <= 1  # at most the forming one, opened before now
            assert int(closed.max()) == (now // step) * step - step  # the last closed candle is released
    src = _src(replay.base_url)
    replay.wall.t = 1_000.0
    _, a = _sync(src, "ETH/USDT", "15m", START_MS - 4 * H)
    replay.wall.t = 1_003.0  # +30 simulated minutes: two more 15m candles closed
    _, b = _sync(src, "ETH/USDT", "15m", START_MS - 4 * H)
    assert len(a) == 16 and len(b) == 18 and b.ts.iloc[-1] == START_MS + 15 * 60_000


class TickWall(Wall):
    """Every read moves the wall clock on by ``step`` seconds (the server reads it once per request)."""

    def __init__(self, step: float):
        super().__init__(0.0)
        self.step, self.calls = step, -1

    def __call__(self) -> float:
        self.calls += 1
        return self.calls * self.step


def test_a_clock_moving_between_requests_is_read_after_each_page(data):
    """At speed 600 each request below costs 300 simulated s: exchangeInfo at 10:38, time at 10:43, klines at 10:48
    (with the forming 10:45 candle). The source reads the clock after the page (10:53), so the 10:45 candle is
    forming, not "from the future", and is dropped; a clock read before the page (10:43) rejected the sync."""
    with start_replay(data, "2026-04-20T10:33", 600, wall=TickWall(0.5)) as h:
        rep, got = _sync(_src(h.base_url), "BTC/USDT", "15m", parse_utc("2026-04-20T09:00"))
        assert [p.rsplit("/", 1)[1] for p, _ in h.exchange.requests] == ["exchangeInfo", "time", "klines", "time"]
        assert h.exchange.klines("BTC/USDT", "15m", parse_utc("2026-04-20T10:48"), None, None, 1)[0][0] == parse_utc(
            "2026-04-20T10:45"
        )
        assert got.ts.tolist() == list(range(parse_utc("2026-04-20T09:00"), parse_utc("2026-04-20T10:31"), 900_000))


def test_real_time_speed_releases_new_candles(data):
    with start_replay(data, START, 36_000.0) as h:  # 10 simulated hours per second
        ex = _src(h.base_url).client()
        first = ex.fetch_ohlcv("BTC/USDT", "15m", limit=3)
        time.sleep(0.3)  # >= 3 simulated hours
        later = ex.fetch_ohlcv("BTC/USDT", "15m", limit=3)
        assert later[-1][0] - first[-1][0] >= 11 * 900_000


def test_resampled_15m_equals_the_real_15m_file(tmp_path):
    """A folder with only BTC's 1m window: the replay serves 15m resampled from 1m with the project's resampler,
    which equals Binance's own 15m candles (shared/data README 1.2)."""
    d = tmp_path / "ohlcv" / "binance_1m_2026-03"
    d.mkdir(parents=True)
    (d / "BTC_USDT-1m.csv.gz").symlink_to(SHARED / "ohlcv" / "binance_1m_2026-03" / "BTC_USDT-1m.csv.gz")
    with start_replay(tmp_path, "2026-04-06", 1.0, wall=Wall()) as h:
        since = parse_utc("2026-04-01")
        rep, got = _sync(_src(h.base_url, page_limit=1000), "BTC/USDT", "15m", since)
        want = _file("BTC/USDT", "15m", since, parse_utc("2026-04-06"))
        assert len(got) == 5 * 96 and rep.pages == 1
        pd.testing.assert_frame_equal(got.drop(columns="volume"), want.drop(columns="volume"), check_dtype=False)
        np.testing.assert_allclose(got.volume, want.volume, rtol=1e-12)
        assert h.exchange.data.source_of("BTC/USDT", "15m") == "1m"
        with pytest.raises(ccxt.BadRequest, match="BTC/USDT serves 1m, 5m, 15m, 1h, 4h, 1d"):
            _src(h.base_url).client().fetch_ohlcv("BTC/USDT", "3m")  # no 1h file either: every tf comes from 1m


def test_resampled_4h_equals_the_pipeline_resampler(replay):
    since = parse_utc("2026-04-01")
    _, got = _sync(_src(replay.base_url), "SOL/USDT", "4h", since)
    h1 = real_ohlcv("SOL/USDT", "1h")
    want = resample_ohlcv(h1[h1.ts >= since], "1h", "4h")
    want = want[want.ts + 4 * H <= START_MS][["ts", "open", "high", "low", "close", "volume"]]
    assert len(got) == 19 * 6 + 2
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)


def _stored(con, symbol="BTC/USDT"):
    return con.execute(
        "SELECT ts, open, high, low, close, volume, locator FROM raw.ohlcv WHERE symbol=? ORDER BY ts", [symbol]
    ).df()


def test_ingest_through_replay_overlap_refetches_and_corrects_a_revised_candle(replay, tmp_path):
    src = _src(replay.base_url)
    since = "2026-04-15"
    last = START_MS - 1.5 * H  # 09:00, the last closed 1h candle at 10:30
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        rep = ingest_exchange_slice(con, src, "binance", "BTC/USDT", "1h", since, overlap=3)
        want = _file("BTC/USDT", "1h", parse_utc(since), START_MS - 30 * 60_000)
        assert rep["new_rows"] == 5 * 24 + 10 and rep["pages"] == 2
        pd.testing.assert_frame_equal(_stored(con).drop(columns="locator"), want, check_dtype=False)
        assert set(_stored(con).locator) == {"ccxt"}
        # the exchange revises its last two candles after they were sent, then two more hours pass
        for ts in (last - H, last):
            row = want[want.ts == ts].iloc[0]
            replay.exchange.revise("BTC/USDT", "1h", ts, close=(row.low + row.high) / 2, volume=row.volume + 1)
        replay.wall.t += 2 * H / 600_000
        n = len(replay.exchange.requests)
        rep = ingest_exchange_slice(con, src, "binance", "BTC/USDT", "1h", since, overlap=3)
        kl = [q for p, q in list(replay.exchange.requests)[n:] if p.endswith("/klines")]
        assert [int(q["startTime"]) for q in kl] == [last - 2 * H]  # checkpoint - (3 - 1) candles
        assert rep["new_rows"] == 3 + 2  # 3 re-fetched + 10:00, 11:00
        got = _stored(con)
        assert got.ts.is_unique and len(got) == len(want) + 2
        fixed = got.set_index("ts").loc[[last - H, last]]
        exp = want.set_index("ts").loc[[last - H, last]]
        np.testing.assert_array_equal(fixed.close, (exp.low + exp.high) / 2)
        np.testing.assert_array_equal(fixed.volume, exp.volume + 1)
        # without the overlap a revision is never seen: the control that this test can fail
        row = got.set_index("ts").loc[last + 2 * H]
        replay.exchange.revise("BTC/USDT", "1h", last + 2 * H, close=(row.low + row.high) / 2)
        replay.wall.t += H / 600_000
        rep = ingest_exchange_slice(con, src, "binance", "BTC/USDT", "1h", since, overlap=0)
        after = _stored(con).set_index("ts")
        assert rep["new_rows"] == 1 and after.loc[last + 2 * H, "close"] == row.close != (row.low + row.high) / 2


def test_swap_ingest_records_the_market_type_and_refuses_to_mix(replay, tmp_path):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        rep = ingest_exchange_slice(
            con, _src(replay.base_url, market_type="swap"), "binance", "ETH/USDT", "1h", "2026-04-19"
        )
        assert rep["new_rows"] == 24 + 10
        assert set(_stored(con, "ETH/USDT").locator) == {"ccxt:swap"}  # the symbol stays ETH/USDT
        cp = con.execute("SELECT symbol, locator FROM raw.ingest_checkpoints WHERE source_kind='exchange'").fetchall()
        assert cp == [("ETH/USDT", "ccxt:swap")]
        with pytest.raises(ValueError, match="holds 34 swap candles of ETH/USDT 1h .* cannot mix markets"):
            ingest_exchange_slice(con, _src(replay.base_url), "binance", "ETH/USDT", "1h", "2026-04-19")


def test_bad_inputs_give_clear_errors(replay, data):
    with pytest.raises(ccxt.BadSymbol, match=r"binance swap has no market LTC/USDT:USDT \(universe symbol 'LTC/USDT'"):
        _sync(_src(replay.base_url, market_type="swap"), "LTC/USDT", "1h", START_MS - 5 * H)
    ex = _src(replay.base_url).client()
    with pytest.raises(ccxt.BadSymbol, match="Invalid symbol.*'LTCUSDT' not listed"):
        ex.publicGetKlines({"symbol": "LTCUSDT", "interval": "1h"})  # the server's own answer (-1121)
    with pytest.raises(ccxt.BadRequest, match=r"DOGE/USDT serves 15m, 1h, 4h, 1d"):
        ex.fetch_ohlcv("DOGE/USDT", "5m")  # no 1m file for DOGE: 5m cannot be built
    with pytest.raises(
        ReplayError, match=r"replay start 2030-01-01 00:00 UTC is outside .* 2017-08-17 00:00 -> 2026-04-30"
    ):
        start_replay(data, "2030-01-01", 600)
    with pytest.raises(ReplayError, match="outside"):
        start_replay(data, "2017-01-01", 600)
    with pytest.raises(ReplayError, match="cannot read the replay start 'not-a-date'"):
        start_replay(data, "not-a-date", 600)
    with pytest.raises(ReplayError, match="no binance candle files"):
        start_replay(SHARED / "onchain", "2026-04-20", 600)
    assert main(["--start", "2030-01-01", "--data-dir", str(SHARED)]) == 2


def test_trader_yaml_settings_reach_the_exchange_source():
    from pipeline.config import ExchangeConfig, settings
    from pipeline.definitions import build_resources

    cfg = settings()
    assert (cfg.exchange.market_type, cfg.exchange.api_base_url) == ("spot", None)  # the defaults: Binance spot
    swap = cfg.exchange.model_copy(update={"market_type": "swap", "api_base_url": "http://127.0.0.1:9"})
    src = build_resources(cfg.model_copy(update={"exchange": swap}))["exchange"]
    assert (src.market_type, src.api_base_url, src.locator) == ("swap", "http://127.0.0.1:9", "ccxt:swap")
    with pytest.raises(ValueError, match="Input should be 'spot' or 'swap'"):
        ExchangeConfig(market_type="futures")


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_order_limits_arrive_through_ccxt(replay, market_type):
    """Seed 004's minimum order and lot step come from the exchange's market data: the replay's Binance filters
    (LOT_SIZE stepSize, NOTIONAL / MIN_NOTIONAL) parsed by ccxt into ``precision.amount`` and ``limits.cost.min``."""
    lim = _src(replay.base_url, market_type=market_type).order_limits(["BTC/USDT", "XRP/USDT", "DOGE/USDT"])
    assert lim["lot_step"].tolist() == [0.00001, 0.1, 1.0]
    assert lim["min_notional"].tolist() == [5.0, 5.0, 5.0] and lim["min_qty"].tolist() == [0.00001, 0.1, 1.0]
    with pytest.raises(ccxt.BadSymbol):
        _src(replay.base_url, market_type=market_type).order_limits(["NOPE/USDT"])
