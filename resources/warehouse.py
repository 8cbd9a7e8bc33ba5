"""The warehouse resource: one DuckDB file, opened per step and closed after (DESIGN.md §4)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import dagster as dg
import duckdb
from pydantic import Field

from warehouse import io


class WarehouseResource(dg.ConfigurableResource):
    """DuckDB warehouse. Every asset using it runs in pool ``duckdb_warehouse`` (limit 1)."""

    path: str = Field(description="Absolute path of the writer's DuckDB file.")
    serving_path: str = Field(description="Absolute path of the read-only serving snapshot.")
    exports_dir: str = Field(description="Folder of the Parquet exports.")

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open (creating tables on a read-write open); retries ~60 s on a held lock."""
        with io.connect(self.path, read_only=read_only) as con:
            yield con
