"""The demo's outbox (issue 17, item 7): one RFC 5322 `.eml` file per message, which a mail program opens, and a
page listing them for compliance officers and administrators in the demo only."""
from email import policy
from email.parser import BytesParser

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from hipaamail.mail_outbox import EmlOutboxBackend, outbox_list

BACKEND = "hipaamail.mail_outbox.EmlOutboxBackend"


def _message(n: int) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=f"Your code {n}", body=f"Line one {n}\nLine two", from_email="Riverside <news@riverside.example>",
        to=[f"patient{n}@example.org"], headers={"List-Unsubscribe": f"<https://riverside.example/u/{n}>"},
    )
    message.attach_alternative(f"<p>Line one {n}</p>", "text/html")
    return message


def test_each_message_is_one_rfc_5322_file(tmp_path):
    backend = EmlOutboxBackend(file_path=tmp_path)

    assert backend.send_messages([_message(1), _message(2), _message(3)]) == 3

    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 3
    assert list(tmp_path.glob(".*")) == []  # no partial file left
    for n, path in enumerate(files, start=1):
        raw = path.read_bytes()
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends (RFC 5322 2.1)
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        assert (parsed["Subject"], parsed["To"]) == (f"Your code {n}", f"patient{n}@example.org")
        assert parsed["List-Unsubscribe"] == f"<https://riverside.example/u/{n}>"
        assert parsed.get_body(preferencelist=("plain",)).get_content().startswith(f"Line one {n}")
    assert outbox_list(tmp_path) == files[::-1]


def test_a_message_without_recipients_writes_nothing(tmp_path):
    message = _message(1)
    message.to = []

    assert EmlOutboxBackend(file_path=tmp_path).send_messages([message]) == 0
    assert list(tmp_path.iterdir()) == []


def test_django_send_mail_through_the_backend(tmp_path, settings):
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_FILE_PATH = tmp_path

    mail.send_mail("Hello", "Body", "a@riverside.example", ["b@example.org", "c@example.org"])

    (path,) = tmp_path.glob("*.eml")
    assert BytesParser(policy=policy.default).parsebytes(path.read_bytes())["To"] == "b@example.org, c@example.org"


def test_the_demo_settings_use_it_and_show_no_debug_pages(monkeypatch):
    import importlib

    monkeypatch.delenv("EMAIL_BACKEND", raising=False)
    monkeypatch.delenv("DEBUG", raising=False)
    from hipaamail.settings import local

    local = importlib.reload(local)
    assert (local.EMAIL_BACKEND, local.DEBUG, local.HIPAAMAIL_DEMO) == (BACKEND, False, True)
    assert "hipaamail.error_pages.MethodNotAllowedPageMiddleware" in local.MIDDLEWARE


@pytest.mark.django_db
def test_the_outbox_page_is_for_compliance_in_the_demo_only(verified_client, settings, tmp_path):
    settings.EMAIL_FILE_PATH = tmp_path
    EmlOutboxBackend(file_path=tmp_path).send_messages([_message(7)])
    (path,) = tmp_path.glob("*.eml")

    verified_client.sign_in(role="compliance officer")
    settings.HIPAAMAIL_DEMO = False
    assert verified_client.get("/demo/outbox/").status_code == 404
    settings.HIPAAMAIL_DEMO = True
    listing = verified_client.get("/demo/outbox/")
    message = verified_client.get(f"/demo/outbox/{path.name}/")

    assert listing.status_code == 200 and "Your code 7" in listing.content.decode()
    assert message.status_code == 200 and "Line one 7" in message.content.decode()
    assert verified_client.get("/demo/outbox/..%2Fsecret.eml/").status_code == 404


@pytest.mark.django_db
def test_r_min_necessary_marketers_do_not_see_the_outbox(verified_client, settings, tmp_path):
    settings.EMAIL_FILE_PATH, settings.HIPAAMAIL_DEMO = tmp_path, True
    EmlOutboxBackend(file_path=tmp_path).send_messages([_message(8)])
    verified_client.sign_in(role="marketer")

    response = verified_client.get("/demo/outbox/")

    assert response.status_code == 404
    assert "patient8@example.org" not in response.content.decode()
