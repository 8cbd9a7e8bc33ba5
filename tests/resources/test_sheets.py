"""gspread source: real gspread Client/Spreadsheet/Worksheet code; only the HTTP transport (a requests
adapter) is replaced, answering the Sheets v4 API with a worksheet built from real on-chain rows."""

import json
from urllib.parse import unquote, urlsplit

import gspread
import pandas as pd
import pytest
import requests
from google.auth.credentials import AnonymousCredentials

from resources.sheets import SheetsSource


class SheetsAdapter(requests.adapters.BaseAdapter):
    def __init__(self, values, title="onchain"):
        super().__init__()
        self.values, self.title, self.requests = values, title, []

    def send(self, request, **kw):
        self.requests.append(request.url)
        path = unquote(urlsplit(request.url).path)
        if "/values/" in path:
            body = {"range": f"'{self.title}'!A1:Z{len(self.values)}", "majorDimension": "ROWS", "values": self.values}
        else:
            body = {
                "spreadsheetId": "KEY",
                "properties": {"title": "metrics"},
                "sheets": [
                    {
                        "properties": {
                            "sheetId": 0,
                            "title": self.title,
                            "index": 0,
                            "sheetType": "GRID",
                            "gridProperties": {"rowCount": len(self.values), "columnCount": len(self.values[0])},
                        }
                    }
                ],
            }
        r = requests.Response()
        r.status_code, r._content, r.url, r.request = 200, json.dumps(body).encode(), request.url, request
        r.headers["Content-Type"] = "application/json"
        return r

    def close(self):
        pass


def _client(adapter):
    session = requests.Session()
    session.mount("https://", adapter)
    return gspread.Client(auth=AnonymousCredentials(), session=session)


@pytest.fixture
def real_rows(shared_data):
    df = pd.read_csv(shared_data / "onchain" / "btc_daily_cm_api_mvrv_2010_2026-08.csv.gz").tail(30)
    return [list(df.columns)] + df.astype(str).values.tolist()


def test_worksheet_to_long_onchain_rows(real_rows):
    adapter = SheetsAdapter(real_rows)
    long = SheetsSource(spreadsheet_key="KEY").read_metrics(client=_client(adapter))
    assert set(long["metric"]) == {"price_usd", "market_cap_usd", "mvrv", "supply", "realized_price_usd"}
    assert (long["source"] == "sheets:onchain").all() and len(long) == 30 * 5
    last = long[(long.date == "2026-08-21") & (long.metric == "mvrv")]["value"].item()
    assert last == pytest.approx(float(real_rows[-1][3]))
    assert any("/values/" in u for u in adapter.requests)  # went through gspread's values API


def test_bad_sheet_rows_are_rejected(real_rows):
    rows = [r[:] for r in real_rows]
    rows[5][0] = "not-a-date"
    with pytest.raises(ValueError, match="sheets:onchain: row 5: unparsable date 'not-a-date'"):
        SheetsSource(spreadsheet_key="KEY").read_metrics(client=_client(SheetsAdapter(rows)))


def test_unconfigured_sheet_is_an_error():
    with pytest.raises(ValueError, match="not configured"):
        SheetsSource().read_metrics()
