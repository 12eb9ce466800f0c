"""Hostile input for the tests named test_hostile_*.py (issue 16, item 4): the values, the Hypothesis
strategies and settings, and the checks every app's tests share. It lives in audit, the lowest layer, so that
every app's tests may import it (the layers contract).

What a hostile submission must never get (R-NO-PHI-LEAK): a server error, a stack trace, its own value quoted in
an error message or a log line, markup of its own run by the page, or a write left half done."""
from __future__ import annotations

import json
import re
from urllib.parse import quote_from_bytes

from django.apps import apps
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Small and stable in CI: a fixed number of examples, no deadline (a page may take 100 ms on a loaded machine),
# derandomized so that a run in CI draws the same examples as the run before it.
HOSTILE = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

MARKER = "h16h"  # in every hostile value, to find it again in a page, an error or a log line
SCRIPT = f'"><script>{MARKER}(1)</script><img src=x onerror={MARKER}(2)>'
ATTRIBUTE = f"' onmouseover='{MARKER}(3)' x='"
TEMPLATE = f"{{{{ settings.SECRET_KEY }}}}{{% load static %}}{{% include 'base.html' %}}{{% debug %}}{{{{ {MARKER}"
FORMULA = f'=HYPERLINK("http://evil.example/{MARKER}","open")'
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTROL = f"{MARKER}\x00nul\x1b[31m\x07\x08"
UNICODE = f"{MARKER}\u202egnp.exe\u200b\ufeff\U0001f469\u200d\u2695\ufe0f\u0301\uffff"
# Lone surrogates cannot be encoded as UTF-8; sent as bytes they are broken UTF-8 (ED A0 80, FF FE).
SURROGATE = f"{MARKER}\ud800\udfff"

# Markup that, found as it was sent in a page, would run in the browser.
UNESCAPED = (f"<script>{MARKER}", f"<img src=x onerror={MARKER}", f"' onmouseover='{MARKER}")


def oversized(max_length: int | None) -> str:
    """One character longer than allowed (5,000 characters when the field sets no limit)."""
    return MARKER + "x" * ((max_length or 4_995) + 1 - len(MARKER))


# The fixed hostile values, by name; `hostile_values` draws mixtures of them and of generated text.
VALUES = {
    "script": SCRIPT,
    "attribute": ATTRIBUTE,
    "template": TEMPLATE,
    "formula": FORMULA,
    "control": CONTROL,
    "unicode": UNICODE,
    "surrogate": SURROGATE,
}


def hostile_text(*, max_length: int | None = None, surrogates: bool = True) -> st.SearchStrategy[str]:
    """One hostile value: a fixed one, one too long, or generated text built around them (any code point,
    control characters and NUL included; lone surrogates only where the value is sent as bytes)."""
    fixed = [value for name, value in VALUES.items() if surrogates or name != "surrogate"]
    alphabet = st.characters(codec=None if surrogates else "utf-8")
    generated = st.builds(
        lambda head, core, tail: head + core + tail,
        st.text(alphabet, max_size=8),
        st.sampled_from(fixed),
        st.text(alphabet, max_size=8),
    )
    formula = st.builds(lambda start, rest: start + MARKER + rest, st.sampled_from(FORMULA_STARTS), st.text(max_size=20))
    return st.one_of(st.sampled_from(fixed), st.just(oversized(max_length)), generated, formula)


def urlencoded(data: dict[str, str | list[str]]) -> bytes:
    """An application/x-www-form-urlencoded body that may hold what a browser cannot send: lone surrogates
    become the broken UTF-8 bytes they would be (surrogatepass), not an error of the test client."""
    pairs = []
    for name, values in data.items():
        for value in values if isinstance(values, list) else [values]:
            raw = value.encode("utf-8", "surrogatepass")
            pairs.append(quote_from_bytes(name.encode()) + "=" + quote_from_bytes(raw, safe=""))
    return "&".join(pairs).encode("ascii")


def post_form(client, url: str, data: dict, **extra):
    return client.generic(
        "POST", url, urlencoded(data), content_type="application/x-www-form-urlencoded", **extra
    )


# --- Checks ---------------------------------------------------------------------------------------------------


def assert_not_a_server_error(response, what: str = "") -> None:
    assert response.status_code < 500, f"{what}: {response.status_code}"
    body = _text(response)
    assert "Traceback (most recent call last)" not in body, what
    assert "Exception Value" not in body, what


def assert_escaped(response, what: str = "") -> None:
    """No hostile markup reaches the page as markup."""
    if "html" not in response.get("Content-Type", ""):
        return
    body = _text(response)
    for raw in UNESCAPED:
        assert raw not in body, f"{what}: {raw!r} is in the page unescaped"


def _text(response) -> str:
    if getattr(response, "streaming", False):
        return ""
    return response.content.decode("utf-8", "replace")


def echoes(text: str, values) -> list[str]:
    """The hostile values (long enough to be recognisable) that `text` quotes."""
    found = []
    for value in values:
        for piece in re.split(r"[\x00-\x1f\ud800-\udfff]", value):
            if len(piece) >= 12 and MARKER in piece and piece in text:
                found.append(piece)
    return found


def form_errors(response) -> list[str]:
    """Every error message of every bound form the page rendered."""
    messages = []
    for form in bound_forms(response):
        for errors in form.errors.values():
            messages.extend(str(message) for message in errors)
    return messages


def bound_forms(response) -> list:
    from django.forms import BaseForm, BaseFormSet

    found, seen = [], set()
    for context in response.context or []:
        for value in _context_values(context):
            forms = value.forms if isinstance(value, BaseFormSet) else [value]
            for form in forms:
                if isinstance(form, BaseForm) and form.is_bound and id(form) not in seen:
                    seen.add(id(form))
                    found.append(form)
    return found


def _context_values(context):
    if hasattr(context, "flatten"):
        return list(context.flatten().values())
    return list(context.values()) if isinstance(context, dict) else []


def assert_no_echo_in_errors_or_logs(response, values, caplog, what: str = "") -> None:
    """R-NO-PHI-LEAK: a value refused is never quoted back in an error message or written to a log."""
    for message in form_errors(response):
        assert not echoes(message, values), f"{what}: an error message quotes the value: {message!r}"
    for record in caplog.records:
        line = record.getMessage()
        assert not echoes(line, values), f"{what}: a log line quotes the value: {line!r}"


_PROJECT_APPS = ("accounts", "api", "audit", "campaigns", "consent", "journeys")


def row_counts() -> dict[str, int]:
    """The number of rows of every table of the product's apps, in one query."""
    tables = sorted(
        {
            model._meta.db_table
            for label in _PROJECT_APPS
            for model in apps.get_app_config(label).get_models()
            if model._meta.managed and not model._meta.proxy
        }
    )
    quote = connection.ops.quote_name
    sql = " UNION ALL ".join(f"SELECT '{table}', COUNT(*) FROM {quote(table)}" for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(cursor.fetchall())


def changed_tables(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {table: after[table] - before[table] for table in before if after[table] != before[table]}


class rolled_back:
    """A savepoint rolled back at the end: each hostile submission starts from the same world. Marked as the
    test case's own block (what pytest-django's and Django's TestCase do), so that the services' durable
    transactions nest inside it as they do inside the test's transaction."""

    def __enter__(self):
        self._atomic = transaction.atomic()
        self._atomic._from_testcase = True
        self._atomic.__enter__()
        return self

    def __exit__(self, *exc):
        transaction.set_rollback(True)
        return self._atomic.__exit__(*exc)


@st.composite
def json_mutated(draw, document, values):
    """`document` (JSON) with one to three of its values, at any depth, replaced by values drawn from `values`."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        node = document
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            node[key] = draw(values)
            break
    return document
