"""django-post-office's side of bench/health_system.py (issue 15, item 5), run in the benchmark's own virtualenv
(bench/requirements.txt) with bench/post_office_settings.py:

    python bench/post_office_send.py MESSAGES.jsonl [--processes 3]

MESSAGES.jsonl holds the messages hipaamail's pipeline sent (one JSON object per line: from, to, raw). Each is
taken apart into what post_office is given (subject, text and HTML bodies, the List-Unsubscribe headers), queued
with `mail.send_many` (one bulk insert, timed as "queue") and sent with `send_queued_mail --processes N` until
the queue is empty (timed as "send"). post_office checks no consent: it sends what it is given. Prints one JSON
line: {"queue_seconds", "send_seconds", "sent", "failed"}.
"""
import argparse
import json
import sys
import time
from email import policy
from email.parser import BytesParser


def _parts(raw: bytes) -> dict:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "subject": str(message["Subject"]),
        "message": text.get_content() if text else "",
        "html_message": html.get_content() if html else "",
        "headers": {name: str(message[name]) for name in ("List-Unsubscribe", "List-Unsubscribe-Post") if message[name]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages")
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from post_office import mail
    from post_office.models import STATUS, Email

    items = []
    with open(args.messages) as lines:
        for line in lines:
            item = json.loads(line)
            items.append({"sender": item["from"], "recipients": [item["to"]], **_parts(item["raw"].encode("ascii"))})
    started = time.perf_counter()
    mail.send_many(items)
    queued = time.perf_counter()
    call_command("send_queued_mail", processes=args.processes, lockfile="/tmp/hipaamail-bench-post-office-lock")
    finished = time.perf_counter()
    print(json.dumps({
        "queue_seconds": queued - started,
        "send_seconds": finished - queued,
        "sent": Email.objects.filter(status=STATUS.sent).count(),
        "failed": Email.objects.filter(status=STATUS.failed).count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
