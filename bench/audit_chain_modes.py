#!/usr/bin/env python
"""Benchmark behind ADR 0004: where the audit hash chain takes its lock.

Two ways to chain events (DESIGN.md, the audit paragraph):

- `sealer` (what the product does): audit_record appends an unsealed row and takes no lock; after the commit
  one sealer at a time (advisory lock, tried, never waited for) chains what has committed.
- `inline` (the alternative, built here only to measure it): audit_record takes the chain lock inside the
  caller's transaction, after the caller's other locks (deliveries, then authorizations, then the chain head),
  chains the event at once and holds the lock until the caller commits.

    .venv/bin/python bench/audit_chain_modes.py contention [--writers 4] [--transactions 50] [--hold-ms 20]
    .venv/bin/python bench/audit_chain_modes.py send --mode inline [send_campaign.py options]

`contention`: --writers processes each run --transactions transactions that write one audit event and then
keep the transaction open --hold-ms (what the sender does when it records a hard bounce's suppression in the
middle of a batch and goes on talking to the mail server), in both modes; prints transactions per second.
Database `hipaamail_bench_audit_modes`, (re)created.

`send`: bench/send_campaign.py, unchanged, with audit_record switched to the inline mode (or left as it is with
--mode sealer), on its own database `hipaamail_bench_send_audit`, so it never drops another run's database.
"""
import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hipaamail_bench_audit_modes"


def inline_mode_install() -> None:
    """Switch audit_record to chaining inside the caller's transaction, under a lock held until its commit."""
    from django.conf import settings
    from django.db import connection

    from audit import services

    settings.HIPAAMAIL_AUDIT_SEAL_ON_COMMIT = False
    original = services.audit_record

    def audit_record_inline(**kwargs):
        event = original(**kwargs)
        with connection.cursor() as cursor:
            # The chain head, locked last; waited for, and held until the caller's transaction ends.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s), set_config('TimeZone', 'UTC', true),"
                " set_config('DateStyle', 'ISO, MDY', true)",
                [services.SEAL_LOCK_KEY],
            )
        services._seal_batch()
        return event

    services.audit_record = audit_record_inline
    for module_name in list(sys.modules):  # every module that imported the name already
        module = sys.modules[module_name]
        if module_name.split(".")[0] in {"campaigns", "consent", "hipaamail"} and getattr(
            module, "audit_record", None
        ) is original:
            module.audit_record = audit_record_inline


def _writer(mode: str, transactions: int, hold: float, start, results) -> None:
    from django.db import connection, transaction

    from audit import services

    connection.close()
    if mode == "inline":
        inline_mode_install()
    start.wait()
    began = time.perf_counter()
    for n in range(transactions):
        with transaction.atomic():
            services.audit_record(actor=None, actor_role="system", action="fhir.imported", details={"n": n})
            time.sleep(hold)
    results.put(time.perf_counter() - began)


def contention(args) -> None:
    import psycopg

    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    os.environ["DATABASE_URL"] = args.admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    _django()
    from django.core.management import call_command
    from django.db import connection

    from audit import selectors, services

    call_command("migrate", verbosity=0)
    context = multiprocessing.get_context("fork")
    for mode in ("sealer", "inline"):
        connection.close()
        start, results = context.Barrier(args.writers + 1), context.Queue()
        workers = [
            context.Process(target=_writer, args=(mode, args.transactions, args.hold_ms / 1000, start, results))
            for _ in range(args.writers)
        ]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - began
        total = args.writers * args.transactions
        services.audit_seal()
        assert selectors.audit_chain_walk().ok
        ideal = f" (at most {args.writers * 1000 / args.hold_ms:,.0f}/s from the holding alone)" if args.hold_ms else ""
        print(f"{mode:>6}: {args.writers} writers x {args.transactions} transactions holding {args.hold_ms:g} ms: "
              f"{wall:.2f}s, {total / wall:,.0f} transactions/s{ideal}")


def send(args, rest: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    from bench import send_campaign

    send_campaign.DATABASE = "hipaamail_bench_send_audit"
    original_setup = __import__("django").setup

    def setup_then_switch(*a, **k):
        original_setup(*a, **k)
        if args.mode == "inline":
            inline_mode_install()

    __import__("django").setup = setup_then_switch
    sys.argv = [sys.argv[0], *rest]
    print(f"audit chain mode: {args.mode}")
    send_campaign.main()


def _django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "hipaamail.settings.test"
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("contention")
    measure.add_argument("--writers", type=int, default=4)
    measure.add_argument("--transactions", type=int, default=50)
    measure.add_argument("--hold-ms", type=float, default=20)
    sending = commands.add_parser("send")
    sending.add_argument("--mode", choices=("sealer", "inline"), default="sealer")
    args, rest = parser.parse_known_args()
    if args.command == "contention":
        contention(args)
    else:
        send(args, rest)


if __name__ == "__main__":
    main()
