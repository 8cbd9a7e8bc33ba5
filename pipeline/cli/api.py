"""``trader api …`` — the options desk's REST API (FastAPI + uvicorn over the serving snapshot) and its tokens."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.common import console, table
from pipeline.config import settings

app = typer.Typer(
    help="REST API of the options desk (FastAPI + uvicorn, reads the serving snapshot).", no_args_is_help=True
)


def tokens_path(cfg) -> str:
    """API tokens live beside the warehouse: ``<warehouse dir>/api_tokens.sqlite``."""
    return str(Path(cfg.warehouse.path).parent / "api_tokens.sqlite")


@app.command("create-token")
def create_token(username: str = typer.Option(..., "--username")) -> None:
    """Runs no job: create an API token for the user given with --username; it is shown once (only its hash is stored)."""
    from pipeline.api import TokenStore

    token = TokenStore(tokens_path(settings())).create(username)
    console.print(f"Token for {username} (shown once, store it now):\n{token}", highlight=False)


@app.command("revoke-token")
def revoke_token(username: str = typer.Option(..., "--username")) -> None:
    """Runs no job: revoke every active API token of the user given with --username."""
    from pipeline.api import TokenStore

    n = TokenStore(tokens_path(settings())).revoke(username)
    console.print(f"revoked {n} token(s) of {username}")
    if n == 0:
        raise typer.Exit(1)


@app.command("list-tokens")
def list_tokens() -> None:
    """Read-only, runs no job: API token ids, users, creation and revocation times (never the tokens)."""
    from pipeline.api import TokenStore

    table(TokenStore(tokens_path(settings())).list(), "API tokens")


@app.command("serve")
def serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000)) -> None:
    """Runs no job: serve the REST API over the serving snapshot (OpenAPI schema at /openapi.json, Swagger UI at /docs and ReDoc at /redoc, both offline); health's age bounds come from the api.health section of the config."""
    import uvicorn

    from pipeline.api import create_app, uvicorn_config

    cfg = settings()
    uvicorn.Server(uvicorn_config(create_app(cfg.warehouse.serving_path, tokens_path(cfg), cfg), host, port)).run()
