"""The demo's outbox: one RFC 5322 file per message in var/outbox/ (EMAIL_FILE_PATH), named so that a listing sorts
them by the time they were written, each readable by any mail program (`.eml`). Django's file backend writes one log
per connection, a whole batch of messages run together with separator lines, which no mail program opens.

Demo and development only (hipaamail.settings.local); production sends over SMTP (hipaamail.settings.production)."""
import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend

_counter_lock = threading.Lock()
_counter = 0


def _next_number() -> int:
    global _counter
    with _counter_lock:
        _counter += 1
        return _counter


def message_bytes(message) -> bytes:
    """The message as a mail server would receive it, lines ending in CRLF (RFC 5322 2.1)."""
    data = message.message().as_bytes()
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class EmlOutboxBackend(BaseEmailBackend):
    """Writes each message to its own `<UTC time>-<pid>-<n>-<random>.eml` file in `file_path` (EMAIL_FILE_PATH)."""

    def __init__(self, *, file_path=None, fail_silently=False, **kwargs):
        super().__init__(fail_silently=fail_silently, **kwargs)
        folder = file_path or getattr(settings, "EMAIL_FILE_PATH", None)
        if not folder:
            raise ImproperlyConfigured("EmlOutboxBackend needs EMAIL_FILE_PATH (the outbox folder).")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def send_messages(self, email_messages) -> int:
        written = 0
        for message in email_messages or ():
            if not message.recipients():
                continue
            try:
                self._write(message)
            except OSError:
                if not self.fail_silently:
                    raise
                continue
            written += 1
        return written

    def _write(self, message) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{os.getpid()}-{_next_number():06d}-{uuid.uuid4().hex[:8]}.eml"
        final = self.folder / name
        partial = self.folder / f".{name}.partial"  # a reader never sees half a message
        partial.write_bytes(message_bytes(message))
        partial.replace(final)
        return final


def outbox_list(folder=None, *, limit: int = 200) -> list[Path]:
    """The newest `limit` messages of the outbox, newest first (for the demo's outbox page)."""
    folder = Path(folder or settings.EMAIL_FILE_PATH)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.eml"), reverse=True)[:limit]
