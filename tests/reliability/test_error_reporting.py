"""Issue 13 item 11: a failing ``trader`` command ends with the failing step, file, row, rule and what to do in a
few lines (the traceback goes to a log file whose path is printed); a non-UTF-8 byte is reported with its row and
file; a broken configuration names the file and the field, without a traceback. The CLI runs in a subprocess on a
temporary data folder holding a slice of the real BTC 1d candles and the real on-chain/sentiment files."""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.onchain import ONCHAIN_SOURCES
from resources.files import FilesSource
from tests.conftest import REPO, SHARED

BAD_ROW = 17  # data row (line 18 of the file) that gets a byte that is not UTF-8


def _cli(tmp: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TRADER_CONFIG": str(config),
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "PYTHONPATH": str(REPO),
        "COLUMNS": "100",
    }
    env.pop("TRADER_DATA_DIR", None)
    (tmp / "dagster_home").mkdir(exist_ok=True)
    (tmp / "dagster_home" / "dagster.yaml").write_text((REPO / ".dagster_home" / "dagster.yaml").read_text())
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _data_dir(tmp: Path) -> Path:
    d = tmp / "data"
    (d / "ohlcv" / "binance").mkdir(parents=True)
    df = pd.read_csv(SHARED / "ohlcv" / "binance" / "BTC_USDT-1d.csv.gz").head(400)
    df.to_csv(d / "ohlcv" / "binance" / "BTC_USDT-1d.csv", index=False)
    for sub in ("onchain", "sentiment"):
        (d / sub).mkdir()
        for f in (SHARED / sub).iterdir():
            (d / sub / f.name).symlink_to(f)
    return d


def _config(tmp: Path, data: Path, extra: str = "") -> Path:
    p = tmp / "trader.yaml"
    p.write_text(
        f"universe:\n  symbols: [BTC/USDT]\n  timeframes: [1d]\nsource: files\ndata_dir: {data}\n"
        f"warehouse:\n  path: {tmp / 'wh' / 'warehouse.duckdb'}\n{extra}"
    )
    return p


def _plant_bad_byte(path: Path, row: int, opener=open) -> None:
    with opener(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    lines[row] = lines[row].replace(b",", b",\xff", 1)  # start of the second column
    if path.is_symlink():
        path.unlink()
    with opener(path, "wb") as fh:
        fh.write(b"\n".join(lines))


@pytest.mark.integration
def test_failed_run_ends_with_step_file_row_rule_and_log(tmp_path):
    data = _data_dir(tmp_path)
    _plant_bad_byte(data / "ohlcv" / "binance" / "BTC_USDT-1d.csv", BAD_ROW)
    r = _cli(tmp_path, _config(tmp_path, data), "ingest")
    out = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 1
    assert len(out) < 30, "\n".join(out)
    assert "Traceback" not in r.stdout + r.stderr and "Stack Trace" not in r.stdout + r.stderr
    tail = "\n".join(out[-5:])
    # the bad file fails its partition alone (issue 13 item 9): the run ends naming the rejected input
    assert "input raw.ohlcv BTC-USDT|1d rejected" in tail and "BTC_USDT-1d.csv" in tail, tail
    assert f"row {BAD_ROW}" in tail and "rule 'utf8'" in tail and "column 'open'" in tail, tail
    assert "what to do:" in tail
    assert "position" not in tail
    assert out[-1].startswith("ingest_job FAILED: input BTC-USDT|1d rejected (rule 'utf8')"), out[-1]
    log = Path(re.search(r"log (\S+\.log)", out[-1]).group(1))
    assert log.parent == tmp_path / "wh" / "logs"
    text = log.read_text()
    assert "rejected" in text and "rule 'utf8'" in text


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ("checks:\n  max_gap_bars: lots\n", "'checks.max_gap_bars'", "valid integer"),
        ("checkz:\n  max_gap_bars: 3\n", "'checkz'", "unknown key"),
        ("regimes:\n  vol_window: [1\n  x: 2\n", "not valid YAML: line", "line"),
    ],
)
def test_config_error_names_file_and_field_without_traceback(tmp_path, extra, field, words):
    cfg = _config(tmp_path, tmp_path / "data", extra)
    r = _cli(tmp_path, cfg, "status")
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 2, out
    assert "Traceback" not in out and len(out.splitlines()) <= 6, out
    assert str(cfg) in out and field in out and words in out, out


def test_non_utf8_byte_in_onchain_file_reports_row_and_column(tmp_path):
    sf = next(s for s in ONCHAIN_SOURCES if s.source == "cm_api_2026_08")
    (tmp_path / "onchain").mkdir()
    p = tmp_path / "onchain" / sf.filename
    p.write_bytes((SHARED / "onchain" / sf.filename).read_bytes())
    _plant_bad_byte(p, 101, gzip.open)  # line 102 = data row 101 = 2010-10-26
    with pytest.raises(ValueError) as e:
        FilesSource(data_dir=str(tmp_path)).read_onchain(sf, p)
    msg = str(e.value)
    assert msg.startswith(f"onchain/{sf.filename}: row 101 (line 102), column 'price_usd': rule 'utf8'"), msg
    assert "position" not in msg
