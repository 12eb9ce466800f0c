"""The marketing footer in the recipient's own language (issue 17, item 6: the patient's preferred language is used
for their mail). The footer carries what the rules require of every marketing message: why they receive it, a
one-click way to stop it (R-CANSPAM-OPTOUT, R-RFC8058) and the postal address (R-CANSPAM-ADDRESS); a patient who reads
Spanish reads it in Spanish. The marketer's content is sent as written."""
import quopri

import pytest
from django.core import mail

from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import CampaignRender
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _body(message, subtype: str) -> str:
    raw = message.message().as_bytes() if hasattr(message, "message") else message
    for part in __import__("email").message_from_bytes(raw).walk():
        if part.get_content_type() == f"text/{subtype}":
            return quopri.decodestring(part.get_payload()).decode("utf-8")
    raise AssertionError(f"no text/{subtype} part")


def test_r_canspam_optout_each_recipient_reads_the_footer_in_their_own_language(settings):
    purpose = purpose_make(name="Diabetes prevention classes", name_es="Clases de prevención de la diabetes")
    campaign = campaign_approved_make(purpose=purpose)
    english = patient_make(email="ana.en@example.org")
    spanish = patient_make(email="ana.es@example.org", language="es")
    for patient in (english, spanish):
        authorization_make(patient=patient, purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass

    by_recipient = {message.to[0]: message for message in mail.outbox}
    assert set(by_recipient) == {"ana.en@example.org", "ana.es@example.org"}
    text_es, html_es = _body(by_recipient["ana.es@example.org"], "plain"), _body(by_recipient["ana.es@example.org"], "html")
    text_en, html_en = _body(by_recipient["ana.en@example.org"], "plain"), _body(by_recipient["ana.en@example.org"], "html")
    assert "Recibe este mensaje porque autorizó a Riverside Health a comunicarse con usted sobre: " \
        "Clases de prevención de la diabetes." in text_es
    assert "Deje de recibir estos mensajes con un clic: http" in text_es
    assert '<p lang="es"' in html_es and ">Deje de recibir estos mensajes</a> con un clic." in html_es
    assert settings.HIPAAMAIL_POSTAL_ADDRESS in text_es and settings.HIPAAMAIL_POSTAL_ADDRESS in html_es
    assert "You receive this message because you authorized Riverside Health to contact you about: " \
        "Diabetes prevention classes." in text_en
    assert '<p lang="en"' in html_en and "Recibe" not in text_en
    # One-click unsubscribe for both, each with its own link (R-RFC8058).
    links = {address: message.extra_headers["List-Unsubscribe"] for address, message in by_recipient.items()}
    assert len(set(links.values())) == 2


def test_a_language_the_organisation_has_no_translation_for_gets_the_default_footer():
    purpose = purpose_make()
    render = CampaignRender(campaign=campaign_approved_make(purpose=purpose))
    default = render.assemble(delivery_id=1, to_address="a@example.org", merge_values={})
    unknown = render.assemble(delivery_id=1, to_address="a@example.org", merge_values={}, language="xx")
    assert unknown.text == default.text and "You receive this message" in default.text


def test_each_language_is_rendered_once_per_render_not_per_message():
    render = CampaignRender(campaign=campaign_approved_make(purpose=purpose_make()))
    for n in range(1, 4):
        render.assemble(delivery_id=n, to_address=f"p{n}@example.org", merge_values={}, language="es")
    assert set(render._variants) == {"", "en", "es"}
    first = render._variants["es"]
    render.assemble(delivery_id=9, to_address="p9@example.org", merge_values={}, language="es")
    assert render._variants["es"] is first
