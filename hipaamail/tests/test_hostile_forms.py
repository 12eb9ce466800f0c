"""Hostile input in every form of the product (issue 16, item 4), through the real views.

The forms are not listed by hand: every URL pattern is walked as in test_headers_and_methods.py (the same world of
real objects), each page is asked for with GET by the visitor who may see it, and the fields of every form it
renders are collected. Every URL that serves POST is then sent, by that visitor, a submission whose every field
(of every form of the product, so that a view reached only by POST gets its own fields too) holds a hostile value
drawn by Hypothesis (audit.tests.hostile): oversized text, NUL and control characters, broken UTF-8 (lone
surrogates as bytes), script and attribute injection, template tags, formulas, bidirectional overrides.

Each submission runs in a savepoint rolled back after it, so each starts from the same world, and must get:
no server error and no stack trace; no hostile markup of its own run by the page it gets or is redirected to;
no error message and no log line that quotes what it sent (R-NO-PHI-LEAK); and, when the form is re-rendered
with errors (a refusal), no row written anywhere but the audit trail's record of the refusal (R-SEC-AUDIT).
File uploads are the importers' (consent/tests/test_hostile_imports.py); the API's bodies are
api/tests/test_hostile_api.py's."""
import pytest
from django import forms
from django.urls import resolve
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.access import PATIENT, PUBLIC, SIGNED_IN, STAFF
from audit.models import AuditEvent
from audit.tests.hostile import (
    HOSTILE,
    assert_escaped,
    assert_no_echo_in_errors_or_logs,
    assert_not_a_server_error,
    changed_tables,
    form_errors,
    hostile_text,
    post_form,
    rolled_back,
    row_counts,
)
from hipaamail.middleware import view_allowed_methods
from hipaamail.tests import test_headers_and_methods as walk
from hipaamail.tests.url_walk import targets as _targets

# The same world and the same walk of every URL pattern as the header and method checks.
world = walk.world
fresh_throttle_and_media = walk.fresh_throttle_and_media
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]

# Pages whose POST ends the visitor's session: they are sent hostile data too, each in its savepoint, and the
# visitor's cookies are put back after it.
AUDIT_TABLE = AuditEvent._meta.db_table
# What a refusal may write: the audit trail's record of it (a wrong second-factor code is audited, R-SEC-MFA)
# and the second factor's own failure counter.
REFUSAL_MAY_WRITE = {AUDIT_TABLE}
# Each sweep sends one submission to every URL that serves POST (about 140): a few sweeps keep it under a minute.
SWEEPS = 4


def _fields_of(response) -> dict[str, forms.Field]:
    """{html name: field} of every form (and formset's form) the page rendered, bound or not."""
    found = {}
    for context in response.context or []:
        values = context.flatten().values() if hasattr(context, "flatten") else []
        for value in values:
            candidates = value.forms + [value.empty_form] if isinstance(value, forms.BaseFormSet) else [value]
            for form in candidates:
                if isinstance(form, forms.BaseForm):
                    for name, field in form.fields.items():
                        found[form.add_prefix(name)] = field
            if isinstance(value, forms.BaseFormSet):
                management = value.management_form
                for name in management.fields:
                    found.setdefault(management.add_prefix(name), forms.IntegerField())
    return found


def _posting_targets(world):
    targets, _ = _targets(world)
    return [
        target
        for target in targets
        if target.level in (STAFF, SIGNED_IN, PATIENT, PUBLIC)
        and "POST" in (view_allowed_methods(resolve(target.url).func) or ())
    ]


def _collect(world, targets) -> tuple[dict[str, dict[str, forms.Field]], dict[str, forms.Field]]:
    """The fields each URL's own page renders, and the fields of every form of the product."""
    by_url, everywhere = {}, {}
    for target in targets:
        client = world["clients"][target.level]
        if "GET" not in (view_allowed_methods(resolve(target.url).func) or ()):
            continue
        response = client.get(target.url)
        if response.status_code == 200 and response.context is not None:
            by_url[target.url] = _fields_of(response)
            everywhere.update(by_url[target.url])
    return by_url, everywhere


def _value_for(field: forms.Field, text: str) -> str | list[str] | None:
    if isinstance(field, forms.FileField):
        return None  # uploads: the importers' own tests
    if isinstance(field, forms.BooleanField):
        return "on"
    if isinstance(field, forms.MultipleChoiceField | forms.ModelMultipleChoiceField):
        return [text, text]
    return text


def _submission(fields: dict[str, forms.Field], texts: list[str]) -> dict:
    data = {}
    for index, (name, field) in enumerate(sorted(fields.items())):
        value = _value_for(field, texts[index % len(texts)])
        if value is not None:
            data[name] = value
    return data


def test_r_no_phi_leak_every_form_refuses_hostile_input_cleanly(world, caplog):
    """R-NO-PHI-LEAK, R-SEC-AUDIT: every form of every page, sent hostile values by the visitor who may use it,
    answers without a server error, escapes what it shows, quotes nothing back in its errors or the logs, and a
    refusal writes nothing but its audit record."""
    targets = _posting_targets(world)
    by_url, everywhere = _collect(world, targets)
    assert len(targets) > 40 and len(everywhere) > 60, (len(targets), len(everywhere))
    outcomes = {"refused": 0, "accepted": 0, "other": 0}
    refused_at = set()

    @settings(HOSTILE, max_examples=SWEEPS)
    @given(texts=st.lists(hostile_text(max_length=300), min_size=1, max_size=4))
    def check(texts):
        for target in targets:
            client = world["clients"][target.level]
            fields = everywhere | by_url.get(target.url, {})
            data = _submission(fields, texts)
            cookies = client.cookies
            caplog.clear()
            with rolled_back():
                before = row_counts()
                events_before = AuditEvent.objects.count()
                response = post_form(client, target.url, data)
                what = f"POST {target.url} ({target.name})"
                assert_not_a_server_error(response, what)
                assert_escaped(response, what)
                assert_no_echo_in_errors_or_logs(response, texts, caplog, what)
                if response.status_code == 200 and form_errors(response):
                    outcomes["refused"] += 1
                    refused_at.add(target.name)
                    for message in form_errors(response):
                        assert len(message) >= 10 and message[0].isupper(), f"{what}: unclear message {message!r}"
                    changed = changed_tables(before, row_counts())
                    assert set(changed) <= REFUSAL_MAY_WRITE, f"{what}: a refusal wrote {changed}"
                    new = AuditEvent.objects.order_by("id")[events_before:]
                    assert all(_is_refusal(event.action) for event in new), (
                        what, [event.action for event in new]
                    )
                elif response.status_code in (301, 302, 303):
                    outcomes["accepted"] += 1
                    location = response["Location"]
                    if location.startswith("/"):
                        page = client.get(location)
                        assert_not_a_server_error(page, f"{what} then GET {location}")
                        assert_escaped(page, f"{what} then GET {location}")
                else:
                    outcomes["other"] += 1
            client.cookies = cookies

    check()
    # The sweep reached the forms: most submissions were refused with a message, some were accepted.
    assert len(refused_at) >= 15 and outcomes["accepted"] >= 10 * SWEEPS, (outcomes, sorted(refused_at))


def _is_refusal(action: str) -> bool:
    return action.endswith(("_failed", "_refused", "_rejected", ".throttled", "_denied")) or action in {
        "mfa.reentry_failed",
    }
