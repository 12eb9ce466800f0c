"""The demo's outbox as pages (demo only: HIPAAMAIL_DEMO, hipaamail.settings.local; a 404 anywhere else): the
messages hipaamail.mail_outbox wrote to var/outbox/, newest first, and each one's text. The outbox holds patients'
addresses and names, so only staff who may see patient evidence open it (compliance officers, administrators;
marketers get the same 404 as a page that does not exist, R-MIN-NECESSARY)."""
import re
from email import policy
from email.parser import BytesParser

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from accounts.roles import sees_patient_evidence
from audit.exceptions import NotFound
from hipaamail.mail_outbox import outbox_list

_NAME = re.compile(r"^[0-9TZ.]+-\d+-\d{6}-[0-9a-f]{8}\.eml$")


def _allowed(request) -> None:
    if not getattr(settings, "HIPAAMAIL_DEMO", False) or not sees_patient_evidence(request.user):
        raise NotFound


def _read(path):
    with path.open("rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)


@require_safe
def outbox(request):
    _allowed(request)
    messages = []
    for path in outbox_list():
        message = _read(path)
        messages.append(
            {"name": path.name, "subject": message["Subject"] or "", "to": message["To"] or "",
             "sent": message["Date"] or ""}
        )
    return render(request, "demo/outbox.html", {"messages_list": messages, "folder": settings.EMAIL_FILE_PATH})


@require_safe
def outbox_message(request, key: str):
    name = key
    _allowed(request)
    path = settings.EMAIL_FILE_PATH / name if _NAME.match(name) else None
    if path is None or not path.is_file():
        raise NotFound
    message = _read(path)
    part = message.get_body(preferencelist=("plain", "html"))
    return render(
        request,
        "demo/outbox_message.html",
        {
            "name": name,
            "headers": [(key, message[key]) for key in ("From", "To", "Subject", "Date", "List-Unsubscribe") if message[key]],
            "text": part.get_content() if part is not None else "",
            "is_html": part is not None and part.get_content_type() == "text/html",
        },
    )
