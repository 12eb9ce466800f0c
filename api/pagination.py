"""Cursor pagination: a page of rows in id order and an opaque cursor for the next page. The cursor is the last id
signed (so a client cannot forge one into a scan of its own) and says nothing about the rows."""
from __future__ import annotations

from django.core import signing
from django.db.models import QuerySet

from api.problems import ApiProblem

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_SALT = "api.cursor"


def cursor_encode(last_id: int) -> str:
    return signing.dumps(last_id, salt=_SALT, compress=False)


def cursor_decode(cursor: str) -> int:
    try:
        value = signing.loads(cursor, salt=_SALT)
    except signing.BadSignature:
        raise ApiProblem(400, "bad_cursor", "The cursor is not one this API gave out") from None
    if not isinstance(value, int) or value < 0:
        raise ApiProblem(400, "bad_cursor", "The cursor is not one this API gave out")
    return value


def page(queryset: QuerySet, *, cursor: str | None, limit: int, descending: bool = False) -> tuple[list, str | None]:
    """Up to `limit` rows after the cursor, in id order (newest first when `descending`), and the next cursor
    (None on the last page)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        last = cursor_decode(cursor)
        queryset = queryset.filter(id__lt=last) if descending else queryset.filter(id__gt=last)
    rows = list(queryset.order_by("-id" if descending else "id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (cursor_encode(rows[-1].id) if more and rows else None)
