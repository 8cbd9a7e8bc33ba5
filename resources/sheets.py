"""The sheets source: on-chain metric columns from a Google Sheets worksheet via gspread.

The worksheet's first row is a header with a ``date`` column (YYYY-MM-DD, UTC) and one column per
metric (e.g. exported from Santiment/Glassnode); rows become long-format ``raw.onchain_metrics``
rows with ``source = "sheets:<worksheet>"``.
"""

from __future__ import annotations

import dagster as dg
import gspread
import pandas as pd
from pydantic import Field

from pipeline.core.onchain import wide_to_long


def worksheet_to_long(values: list[list[str]], source: str, date_column: str = "date") -> pd.DataFrame:
    """Rows of ``Worksheet.get_all_values()`` -> long on-chain rows.

    Raises:
        ValueError: empty sheet, missing date column, bad/duplicate date (naming sheet and row).
    """
    if not values or not values[0]:
        raise ValueError(f"{source}: worksheet is empty")
    header, body = values[0], values[1:]
    wide = pd.DataFrame(body, columns=header).replace("", None)
    return wide_to_long(wide, source, date_column)


class SheetsSource(dg.ConfigurableResource):
    """Google Sheets reader (service-account auth)."""

    spreadsheet_key: str | None = Field(None, description="Sheet key from its URL; None disables the source.")
    worksheet: str = Field("onchain", description="Worksheet (tab) title.")
    date_column: str = Field("date", description="Header of the date column.")
    service_account_file: str | None = Field(None, description="Service-account JSON (GOOGLE_APPLICATION_CREDENTIALS).")

    def client(self) -> gspread.Client:
        return (
            gspread.service_account(filename=self.service_account_file)
            if self.service_account_file
            else gspread.service_account()
        )

    def read_metrics(self, client: gspread.Client | None = None) -> pd.DataFrame:
        """Long rows ``date, source, metric, value`` from the configured worksheet.

        Raises:
            gspread.exceptions.APIError / SpreadsheetNotFound / WorksheetNotFound, ValueError for bad rows.
        """
        if not self.spreadsheet_key:
            raise ValueError("sheets source is not configured (spreadsheet_key is empty)")
        gc = client or self.client()
        ws = gc.open_by_key(self.spreadsheet_key).worksheet(self.worksheet)
        return worksheet_to_long(ws.get_all_values(), f"sheets:{self.worksheet}", self.date_column)
