"""IO boundaries as Dagster resources: files, exchange (ccxt), sheets (gspread), warehouse (DuckDB)."""
