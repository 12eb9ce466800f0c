"""Hostile bodies for every POST operation of the integration API (issue 16, item 4).

test_schemathesis.py fuzzes every operation from its schema, with well-formed JSON of the declared types. This
file sends what a schema-driven generator does not: valid bodies with values replaced, at any depth, by hostile
ones (lone surrogates and NUL as JSON escapes, oversized strings, script, formulas, template tags, numbers of
thousands of digits, wrong types), and bodies that are no JSON at all (broken UTF-8, UTF-16 with its BOM,
nesting deeper than Python's recursion limit, a body over the API's size limit).

Every answer: no server error; an error is `application/problem+json` with a code and never quotes a value
sent (R-NO-PHI-LEAK); a refused call writes nothing but its audit event and its idempotency record, and a
patient batch creates exactly the items it reports created."""
import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from api import middleware
from audit.tests.hostile import (
    HOSTILE,
    MARKER,
    SCRIPT,
    VALUES,
    changed_tables,
    echoes,
    hostile_text,
    json_mutated,
    oversized,
    rolled_back,
    row_counts,
)
from consent.models import Patient
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
# What any call writes, whatever its answer: its audit event and (a POST) the answer kept for its key.
EVERY_CALL_WRITES = {"audit_auditevent", "api_idempotencyrecord"}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def valid_bodies():
    """One valid body per POST operation (path -> body)."""
    patient = patient_make(external_id="MRN-H16", email="h16.patient@example.org")
    purpose = purpose_make(code="cpap-supplies", name="CPAP supplies")
    form = form_published_make(purpose)
    signed_at = (timezone.now() - timedelta(days=2)).isoformat()
    evidence = {"content_type": "application/pdf", "data": base64.b64encode(PDF).decode()}
    event = {
        "event_id": "ev-1", "type": "equipment.delivered", "patient_id": patient.pk, "occurred_at": signed_at,
        "attributes": {"equipment_type": "CPAP"},
    }
    return {
        "/api/v1/patients/upsert": {
            "items": [{"external_id": "MRN-NEW", "email": "new@example.org", "full_name": "New Patient",
                       "condition_codes": ["E11"], "postal_code": "02139"}]
        },
        "/api/v1/patients/search": {"external_id": "MRN-H16"},
        "/api/v1/authorizations": {
            "patient_id": patient.pk, "purpose": purpose.code, "form_version": form.version, "signed_at": signed_at,
            "signer_name": "Pat Jones", "signed_by_representative": False, "representative_authority": "",
            "evidence": evidence,
        },
        "/api/v1/authorizations/revocations": {"patient_id": patient.pk, "purpose": purpose.code},
        "/api/v1/events": event,
        "/api/v1/events/batch": {"events": [event, event | {"event_id": "ev-2"}]},
    }


HOSTILE_JSON = st.one_of(
    hostile_text(max_length=300),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(hostile_text(), max_size=2),
    st.dictionaries(hostile_text(), hostile_text(), max_size=2),
)


def mutated(body: dict):
    """`body` with one to three of its values, at any depth, replaced by hostile JSON."""
    return json_mutated(body, HOSTILE_JSON)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in _strings(key) + _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _error_texts(value) -> list[str]:
    """The strings under every "errors" of an answer (a batch's rejected items)."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (_strings(item) if key == "errors" else _error_texts(item))]
    if isinstance(value, list):
        return [text for item in value for text in _error_texts(item)]
    return []


def _assert_clean(response, values, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:300])
    text = response.content.decode("utf-8", "replace")
    if response["Content-Type"].split(";")[0] in (PROBLEM, "application/json"):
        # As a client reads it, escapes undone. An accepted call may return the ids it was sent (an event_id);
        # what explains a refusal (a problem, or an item's errors in a batch) never quotes what was sent.
        answer = json.loads(response.content)
        text = "\n".join(_strings(answer) if response.status_code >= 400 else _error_texts(answer))
    assert not echoes(text, values), f"{what}: the answer quotes a value"
    if response.status_code >= 400:
        assert response["Content-Type"] == PROBLEM, what
        problem = json.loads(response.content)
        assert problem["code"] and problem["title"], what


def test_r_no_phi_leak_hostile_values_in_every_post_body_are_refused_cleanly_and_write_nothing(
    api_client, valid_bodies, caplog
):
    """R-NO-PHI-LEAK: every POST operation, its valid body mutated with hostile values: a clean answer, never
    quoting a value, and a refusal writes nothing but what every call writes."""
    api = api_client(rate_limit_per_minute=100_000)
    outcomes = {"refused": 0, "accepted": 0}

    @settings(HOSTILE, max_examples=20)
    @given(data=st.data())
    def check(data):
        for path, valid in valid_bodies.items():
            body = data.draw(mutated(valid), label=path)
            values = [value for value in _strings(body) if MARKER in value]
            caplog.clear()
            with rolled_back():
                before = row_counts()
                patients = Patient.objects.count()
                # ensure_ascii: a lone surrogate travels as its \\ud800 escape, as a client's JSON encoder sends it.
                response = api.post(path, raw=json.dumps(body, ensure_ascii=True).encode())
                _assert_clean(response, values, f"POST {path}")
                for record in caplog.records:
                    assert not echoes(record.getMessage(), values), f"POST {path}: a log line quotes a value"
                changed = changed_tables(before, row_counts())
                if response.status_code >= 400:
                    outcomes["refused"] += 1
                    assert set(changed) <= EVERY_CALL_WRITES, (path, changed)
                else:
                    outcomes["accepted"] += 1
                if path == "/api/v1/patients/upsert" and response.status_code == 200:
                    assert Patient.objects.count() - patients == json.loads(response.content)["created"]

    check()
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0, outcomes


def _leaves(value, path=()):
    """The path of every value in a JSON document that is not an object or a list (and of every empty one)."""
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list) and value:
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, (*path, index))]
    return [path]


def _replaced(body, path, new):
    body = json.loads(json.dumps(body))
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return body


FIXED = [*VALUES.values(), oversized(300), 10**400, -1, 2**63, True, None, [], {SCRIPT: 1}]


def test_r_no_phi_leak_each_hostile_value_in_each_field_of_each_post_body(api_client, valid_bodies, caplog):
    """R-NO-PHI-LEAK: every field of every POST body, one at a time, given each fixed hostile value (the
    systematic complement of the random mixtures above)."""
    api = api_client(rate_limit_per_minute=100_000)
    sent = 0
    for path, valid in valid_bodies.items():
        for leaf in _leaves(valid):
            for value in FIXED:
                body = _replaced(valid, leaf, value)
                values = [text for text in _strings(body) if MARKER in text]
                caplog.clear()
                with rolled_back():
                    before = row_counts()
                    response = api.post(path, raw=json.dumps(body, ensure_ascii=True).encode())
                    what = f"POST {path} with {'.'.join(map(str, leaf))} = {str(value)[:30]!r}"
                    _assert_clean(response, values, what)
                    for record in caplog.records:
                        assert not echoes(record.getMessage(), values), f"{what}: a log line quotes a value"
                    if response.status_code >= 400:
                        assert set(changed_tables(before, row_counts())) <= EVERY_CALL_WRITES, what
                sent += 1
    assert sent > 300


RAW_BODIES = {
    "broken UTF-8": b'{"items": [{"external_id": "MRN\xff\xfe' + MARKER.encode() + b'"}]}',
    "UTF-16 with its BOM": '{"items": []}'.encode("utf-16"),
    "nested lists": b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested objects": b'{"items": [' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"]}",
    "a 5,000-digit number": b'{"items": [{"external_id": ' + b"9" * 5000 + b"}]}",
    "NaN and Infinity": b'{"patient_id": NaN, "purpose": Infinity}',
    "NUL bytes": b"\x00" * 64,
    "not JSON": b"{" + MARKER.encode() + b",,",
    "a JSON string": json.dumps(MARKER * 3).encode(),
    "empty": b"",
}


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_bodies_that_are_no_json_get_a_problem_and_write_nothing(api_client, valid_bodies, name):
    """Whatever the bytes, every POST operation answers 4xx problem+json, quotes nothing and writes nothing."""
    api = api_client(rate_limit_per_minute=100_000)
    for path in valid_bodies:
        before = row_counts()
        response = api.post(path, raw=RAW_BODIES[name])
        assert 400 <= response.status_code < 500, (path, response.status_code)
        _assert_clean(response, [MARKER * 3, "MRN\ufffd\ufffd" + MARKER], f"POST {path}")
        assert set(changed_tables(before, row_counts())) <= EVERY_CALL_WRITES


def test_a_body_over_the_limit_is_refused_413_before_it_is_parsed(api_client, valid_bodies, monkeypatch):
    """A body larger than API_MAX_BODY_BYTES gets 413 problem+json, whatever operation it is sent to."""
    monkeypatch.setattr(middleware, "API_MAX_BODY_BYTES", 10_000)
    api = api_client()
    huge = json.dumps({"items": [{"external_id": "MRN-1", "full_name": MARKER * 5_000}]}).encode()
    for path in valid_bodies:
        before = row_counts()
        response = api.post(path, raw=huge)
        assert response.status_code == 413, (path, response.status_code)
        assert response["Content-Type"] == PROBLEM
        assert MARKER not in response.content.decode()
        assert set(changed_tables(before, row_counts())) <= EVERY_CALL_WRITES

