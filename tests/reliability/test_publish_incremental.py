"""Issue 16 (speed), item 2: a publish costs what changed. After a change to one table only that table is copied (by
7-day blocks for a table with ``ts``: an appended candle copies its block only), every other table and its Parquet
file is kept (hard link), and the published set equals a full publish row for row."""

import json
import os

import duckdb
import pandas as pd
import pytest

from tests.conftest import real_ohlcv
from warehouse.publish import BLOCK_MS, MANIFEST, publish_snapshot, resolve_snapshot, resolve_version

TABLES = ["market.ohlcv", "market.onchain_daily", "signals.setups"]


@pytest.fixture(scope="module")
def frames(shared_data):
    """Real 1h candles of two pairs (2 months each), a real on-chain file and a small frame without ``ts``/date key."""
    parts = []
    for sym in ("BTC/USDT", "ETH/USDT"):
        b = real_ohlcv(sym, "1h")
        b = b[(b["ts"] >= 1_677_628_800_000) & (b["ts"] < 1_682_899_200_000)]  # 2023-03-01 .. 2023-05-01
        parts.append(b[["ts", "open", "high", "low", "close", "volume"]].assign(exchange="binance", symbol=sym))
    onchain = pd.read_csv(shared_data / "onchain" / "btc_daily.csv.gz").iloc[:400, :6]
    return pd.concat(parts, ignore_index=True), onchain


def _load(con, ohlcv, onchain) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS market")
    con.execute("CREATE SCHEMA IF NOT EXISTS signals")
    con.register("o", ohlcv)
    con.register("c", onchain)
    con.execute("CREATE OR REPLACE TABLE market.ohlcv AS SELECT * FROM o")
    con.execute("CREATE OR REPLACE TABLE market.onchain_daily AS SELECT * FROM c")
    con.execute("CREATE OR REPLACE TABLE signals.setups AS SELECT symbol, max(close) AS x FROM o GROUP BY symbol")


def _contents(serving, exports) -> dict:
    """Every table of the current version, from the snapshot and from its Parquet file, rows sorted."""
    version, snap = resolve_version(exports), resolve_snapshot(serving)
    out = {}
    with duckdb.connect(str(snap), read_only=True) as con:
        for t in TABLES:
            out[t] = con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            out[t + ".parquet"] = con.execute(f"SELECT * FROM '{version / (t + '.parquet')}' ORDER BY ALL").fetchall()
    return out


def test_publish_copies_only_the_changed_table_and_equals_a_full_publish(frames, tmp_path):
    ohlcv, onchain = frames
    inc_s, inc_e = tmp_path / "inc" / "serving.duckdb", tmp_path / "inc" / "exports"
    full_s, full_e = tmp_path / "full" / "serving.duckdb", tmp_path / "full" / "exports"
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        _load(con, ohlcv.iloc[:-1], onchain)  # one candle short of the data
        first: dict = {}
        publish_snapshot(con, TABLES, str(inc_s), str(inc_e), report=first)
        assert {v["mode"] for v in first.values()} == {"full"}  # no previous version: a full build
        v1 = resolve_version(inc_e)

        # the next candle of ETH/USDT closes: only market.ohlcv changes, by one row in ETH's newest 30-day block
        con.register("all_rows", ohlcv)
        con.execute("INSERT INTO market.ohlcv SELECT * FROM all_rows ORDER BY symbol DESC, ts DESC LIMIT 1")
        how: dict = {}
        publish_snapshot(con, TABLES, str(inc_s), str(inc_e), report=how)
        eth = ohlcv[ohlcv["symbol"] == "ETH/USDT"]
        block = eth["ts"] // BLOCK_MS == eth["ts"].max() // BLOCK_MS
        assert how["market.ohlcv"] == {**how["market.ohlcv"], "mode": "blocks", "rows_copied": int(block.sum())}
        assert how["market.onchain_daily"]["mode"] == how["signals.setups"]["mode"] == "linked"
        v2 = resolve_version(inc_e)
        for t in ("market.onchain_daily", "signals.setups"):  # the same Parquet file, not a copy
            assert os.stat(v2 / f"{t}.parquet").st_ino == os.stat(v1 / f"{t}.parquet").st_ino
        assert os.stat(v2 / "market.ohlcv.parquet").st_ino != os.stat(v1 / "market.ohlcv.parquet").st_ino
        assert json.loads((v2 / MANIFEST).read_text())["chain"] == 1

        # a revised candle (the exchange's overlap re-fetch) and a table without ts change too
        con.execute(
            "UPDATE market.ohlcv SET close = close + 1 WHERE symbol = 'BTC/USDT' AND ts = (SELECT min(ts) FROM all_rows)"
        )
        con.execute("UPDATE signals.setups SET x = x + 1 WHERE symbol = 'BTC/USDT'")
        how = {}
        publish_snapshot(con, TABLES, str(inc_s), str(inc_e), report=how)
        assert how["market.ohlcv"]["mode"] == "blocks" and 0 < how["market.ohlcv"]["rows_copied"] <= 720
        assert how["signals.setups"]["mode"] == "full" and how["market.onchain_daily"]["mode"] == "linked"

        publish_snapshot(con, TABLES, str(full_s), str(full_e), incremental=False)
    got, want = _contents(inc_s, inc_e), _contents(full_s, full_e)
    assert got == want
    assert len(got["market.ohlcv"]) == len(ohlcv)
