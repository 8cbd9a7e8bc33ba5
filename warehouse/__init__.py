"""Storage layer: table contracts, DDL and read/write helpers over DuckDB (no Dagster)."""
