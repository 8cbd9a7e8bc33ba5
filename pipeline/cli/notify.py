"""``trader notify …`` — notifications (issue 16): ``test`` runs ``notify_test_job`` (one test message enqueued and
delivered to the configured Telegram chat); ``status`` reads the outbox ``ops.notifications``."""

from __future__ import annotations

import typer

from pipeline.cli.common import console, print_failures, quiet_run_config, read, run_job, table
from pipeline.config import settings

app = typer.Typer(help="Notifications: Telegram delivery through the ops.notifications outbox.", no_args_is_help=True)


@app.command("test")
def test() -> None:
    """Run notify_test_job: enqueue one test message and deliver it now; print what Telegram answered."""
    tg = settings().notify.telegram
    r = run_job(
        "notify_test_job", quiet_run_config({"ops": {"deliver_notifications": {"config": {"max_wait_s": 0.0}}}})
    )
    if not r.success:
        print_failures(r)
        raise typer.Exit(1)
    key = r.output_for_node("enqueue_test_message")
    row = read(
        "SELECT status, attempts, telegram_message_id, last_error FROM ops.notifications WHERE dedup_key = ?", [key]
    ).iloc[0]
    if row["status"] == "sent":
        console.print(f"[green]sent[/] to chat {tg.chat_id} (Telegram message id {int(row['telegram_message_id'])})")
        return
    if row["status"] == "off":
        console.print(
            "Telegram is disabled (notify.telegram.enabled: false in trader.yaml): the message is stored in "
            "ops.notifications as 'off', nothing was sent."
        )
        return
    console.print(
        f"[red]not sent[/]: status {row['status']} after {row['attempts']} attempt(s); last error: {row['last_error']}"
    )
    raise typer.Exit(1)


@app.command("status")
def status(limit: int = typer.Option(10, help="Newest messages shown.")) -> None:
    """Messages of the outbox by kind and status, and the newest ones with their last error; read-only, runs no job."""
    have = read(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'ops' AND table_name = 'notifications'"
    )
    if not int(have["n"].iloc[0]):
        console.print("no outbox yet (ops.notifications is created by the next run that writes the warehouse)")
        return
    table(read("SELECT kind, status, count(*) AS messages FROM ops.notifications GROUP BY ALL ORDER BY ALL"), "outbox")
    table(
        read(
            """SELECT created_at, kind, status, attempts, failures, next_attempt_at, sent_at, telegram_message_id,
                      last_error FROM ops.notifications ORDER BY seq DESC LIMIT ?""",
            [limit],
        ),
        f"newest {limit}",
    )
