"""The content library: compliance officers and administrators write, approve, retire and copy email templates
and content blocks; marketers cannot (404, and the services refuse them); approved items never change; every
write is audited with ids and codes only (R-NO-PHI-LEAK, R-MIN-NECESSARY)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import ContentBlock, EmailTemplate
from campaigns.services import library as services_content
from campaigns.tests.factories import block_make, template_make

pytestmark = pytest.mark.django_db


def _block_post(**overrides) -> dict:
    return {"name": "CPAP cushions", "html": "<p>New <strong>cushions</strong> for {{ first_name }}.</p>"} | overrides


def test_library_urls():
    from django.urls import reverse

    assert reverse("campaigns:content_library") == "/campaigns/content/"
    assert reverse("campaigns:content_block_new") == "/campaigns/content/blocks/new/"
    assert reverse("campaigns:content_block_edit", args=[4]) == "/campaigns/content/blocks/4/"
    assert reverse("campaigns:content_template_new") == "/campaigns/content/templates/new/"
    assert (
        reverse("campaigns:content_item_action", args=["block", 4, "approve"]) == "/campaigns/content/block/4/approve/"
    )


def test_marketer_gets_404_on_every_library_page_and_changes_nothing(verified_client):
    """R-MIN-NECESSARY: only compliance officers and administrators manage the library."""
    block = block_make(approved=False)
    template = template_make(approved=False)
    verified_client.sign_in(role="marketer")
    events = AuditEvent.objects.count()

    for url in (
        "/campaigns/content/",
        "/campaigns/content/blocks/new/",
        f"/campaigns/content/blocks/{block.pk}/",
        "/campaigns/content/templates/new/",
        f"/campaigns/content/templates/{template.pk}/",
    ):
        assert verified_client.get(url).status_code == 404, url
    assert verified_client.post("/campaigns/content/blocks/new/", _block_post()).status_code == 404
    assert (
        verified_client.post(f"/campaigns/content/blocks/{block.pk}/", _block_post(name="Changed")).status_code == 404
    )
    for action in ("approve", "retire", "copy"):
        assert verified_client.post(f"/campaigns/content/block/{block.pk}/{action}/").status_code == 404
        assert verified_client.post(f"/campaigns/content/template/{template.pk}/{action}/").status_code == 404

    block.refresh_from_db()
    template.refresh_from_db()
    assert (block.status, block.name, template.status) == ("draft", block.name, "draft")
    assert ContentBlock.objects.count() == 1 and EmailTemplate.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_services_refuse_a_marketer_too():
    marketer = staff_make(role="marketer")
    block = block_make(approved=False)
    with pytest.raises(PermissionDenied):
        services_content.content_block_create(actor=marketer, name="x", html="<p>x</p>")
    with pytest.raises(PermissionDenied):
        services_content.library_item_approve(actor=marketer, kind="block", item_id=block.pk)
    with pytest.raises(PermissionDenied):
        services_content.email_template_create(actor=marketer, name="x")
    block.refresh_from_db()
    assert block.status == "draft"


def test_officer_writes_a_block_it_is_sanitised_then_approved_audited_with_ids_only(verified_client):
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        "/campaigns/content/blocks/new/",
        _block_post(html='<p onclick="x()">New cushions for {{ first_name }}.</p><script>steal()</script>'),
    )

    block = ContentBlock.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/campaigns/content/blocks/{block.pk}/"
    assert block.html == "<p>New cushions for {{ first_name }}.</p>"
    assert (block.status, block.created_by_id) == ("draft", officer.pk)
    page = verified_client.get(response["Location"]).content.decode()
    assert "The HTML was cleaned for email" in page
    assert "New cushions for Alex." in page  # the preview, with the synthetic patient (escaped into srcdoc)

    response = verified_client.post(f"/campaigns/content/block/{block.pk}/approve/")
    block.refresh_from_db()
    assert response.status_code == 302
    assert (block.status, block.approved_by_id) == ("approved", officer.pk) and block.approved_at

    events = list(
        AuditEvent.objects.filter(object_type="content_block").order_by("id").values_list("action", "details")
    )
    assert events == [
        ("content_block.created", {"status": "draft"}),
        ("content_block.approved", {"status": "approved"}),
    ]


def test_approved_items_never_change_a_copy_does(verified_client):
    officer = verified_client.sign_in(role="administrator")
    block = block_make(officer=officer, html="<p>Original</p>")

    response = verified_client.post(f"/campaigns/content/blocks/{block.pk}/", _block_post(html="<p>Changed</p>"))
    block.refresh_from_db()
    assert response.status_code == 200 and block.html == "<p>Original</p>"
    with pytest.raises(ValidationError):
        services_content.content_block_update(actor=officer, block_id=block.pk, name="x", html="<p>Changed</p>")

    response = verified_client.post(f"/campaigns/content/block/{block.pk}/copy/")
    copy = ContentBlock.objects.exclude(pk=block.pk).get()
    assert response["Location"] == f"/campaigns/content/blocks/{copy.pk}/"
    assert (copy.status, copy.html, copy.name) == ("draft", "<p>Original</p>", f"{block.name} (copy)")
    assert AuditEvent.objects.get(action="content_block.created", object_id=str(copy.pk)).details == {
        "status": "draft",
        "copied_from": block.pk,
    }

    verified_client.post(f"/campaigns/content/block/{block.pk}/retire/")
    block.refresh_from_db()
    assert block.status == "retired" and block.retired_at
    assert AuditEvent.objects.filter(action="content_block.retired").get().details == {
        "status": "retired",
        "previous": "approved",
    }


def test_block_with_a_template_trick_is_refused_with_a_clear_message(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        "/campaigns/content/blocks/new/", _block_post(html="<p>{{ config.SECRET_KEY }}</p>")
    )

    assert response.status_code == 200
    assert "Block, line 1: {{ config.SECRET_KEY }} is not a merge field" in response.content.decode()
    assert not ContentBlock.objects.exists()


def test_template_with_a_stylesheet_that_loads_something_is_refused(verified_client):
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        "/campaigns/content/templates/new/",
        {
            "name": "Brand",
            "header_html": "<h1>Riverside</h1>",
            "footer_html": "",
            "css": "@import url(https://t.example/x.css);",
        },
    )

    assert response.status_code == 200
    assert "Stylesheet: @import, url( is not allowed" in response.content.decode()
    assert not EmailTemplate.objects.exists()


def test_officer_writes_and_approves_a_template(verified_client):
    officer = verified_client.sign_in(role="compliance officer")

    verified_client.post(
        "/campaigns/content/templates/new/",
        {
            "name": "Brand",
            "header_html": '<h1 class="brand">Riverside</h1>',
            "footer_html": "<p>Call 555-0100</p>",
            "css": ".brand { color: #10243e }",
        },
    )
    template = EmailTemplate.objects.get()
    page = verified_client.get(f"/campaigns/content/templates/{template.pk}/").content.decode()
    verified_client.post(f"/campaigns/content/template/{template.pk}/approve/")

    template.refresh_from_db()
    assert (template.status, template.approved_by_id, template.css) == (
        "approved",
        officer.pk,
        ".brand { color: #10243e }",
    )
    assert "color:#10243e" in page  # the preview has the stylesheet inlined
    assert list(AuditEvent.objects.filter(object_type="email_template").values_list("action", flat=True)) == [
        "email_template.created",
        "email_template.approved",
    ]


def test_library_lists_items_with_their_status(verified_client):
    verified_client.sign_in(role="compliance officer")
    block_make(name="Approved offer")
    block_make(name="Draft offer", approved=False)
    template_make(name="Brand")

    page = verified_client.get("/campaigns/content/").content.decode()

    assert "Approved offer" in page and "Draft offer" in page and "Brand" in page
    assert page.count('class="badge approved"') == 2 and page.count('class="badge draft"') == 1


def test_an_approved_item_cannot_be_approved_again_and_a_retired_one_not_retired_again():
    officer = staff_make(role="compliance officer")
    block = block_make(officer=officer)
    with pytest.raises(ValidationError):
        services_content.library_item_approve(actor=officer, kind="block", item_id=block.pk)
    services_content.library_item_retire(actor=officer, kind="block", item_id=block.pk)
    with pytest.raises(ValidationError):
        services_content.library_item_retire(actor=officer, kind="block", item_id=block.pk)


def test_demo_seed_has_a_library_and_campaigns_built_from_it():
    """`make run` shows the feature: an approved template and blocks, a draft block, and the launched campaign's
    messages carry each patient's own first name (the diabetes form lists it) inside the template."""
    from django.core import mail
    from django.core.management import call_command

    from campaigns.models import Campaign, Delivery

    call_command("demo_seed", "--send-now", "--patients", "20", verbosity=0)

    assert EmailTemplate.objects.filter(status="approved").count() == 1
    assert ContentBlock.objects.filter(status="approved").count() == 3
    assert ContentBlock.objects.filter(status="draft").count() == 1
    draft = Campaign.objects.get(name="Spring CPAP supplies refresh")
    assert draft.template is not None and draft.content_blocks.count() == 2
    sent = Delivery.objects.filter(status="sent").select_related("patient")
    assert sent.exists() and len(mail.outbox) == sent.count()
    first_names = {delivery.patient.email: delivery.patient.full_name.split()[0] for delivery in sent}
    for message in mail.outbox:
        assert f"Dear {first_names[message.to[0]]}," in message.body
        assert "Riverside Health" in message.body and "Eight Tuesday evenings" in message.body


def test_a_block_says_which_purposes_it_may_be_used_for_and_a_copy_keeps_them(verified_client):
    """Issue 17: a block is scoped by purpose (none ticked: every purpose); the choice is audited with ids only,
    fixed once approved, and copied with the block."""
    from consent.tests.factories import purpose_make

    cpap, diabetes = purpose_make(name="CPAP supplies"), purpose_make(name="Diabetes education")
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.post("/campaigns/content/blocks/new/", _block_post(purposes=[cpap.pk]))

    block = ContentBlock.objects.get()
    assert response.status_code == 302
    assert list(block.purposes.values_list("pk", flat=True)) == [cpap.pk]
    assert AuditEvent.objects.get(action="content_block.created").details == {"status": "draft", "purposes": [cpap.pk]}
    verified_client.post(f"/campaigns/content/blocks/{block.pk}/", _block_post(purposes=[cpap.pk, diabetes.pk]))
    assert sorted(block.purposes.values_list("pk", flat=True)) == sorted([cpap.pk, diabetes.pk])
    assert AuditEvent.objects.get(action="content_block.updated").details == {
        "status": "draft", "changed": ["purposes"], "purposes": sorted([cpap.pk, diabetes.pk])
    }
    library = verified_client.get("/campaigns/content/").content.decode()
    assert "CPAP supplies, Diabetes education" in library or "Diabetes education, CPAP supplies" in library

    services_content.library_item_approve(actor=officer, kind="block", item_id=block.pk)
    verified_client.post(f"/campaigns/content/blocks/{block.pk}/", _block_post(purposes=[]))
    assert sorted(block.purposes.values_list("pk", flat=True)) == sorted([cpap.pk, diabetes.pk])  # approved: fixed
    copy = services_content.library_item_copy(actor=officer, kind="block", item_id=block.pk)
    assert sorted(copy.purposes.values_list("pk", flat=True)) == sorted([cpap.pk, diabetes.pk])


def test_a_block_for_no_purpose_in_particular_is_offered_for_every_purpose():
    from campaigns.content import content_blocks_allowed
    from consent.tests.factories import purpose_make

    cpap, diabetes = purpose_make(name="CPAP supplies"), purpose_make(name="Diabetes education")
    everywhere = block_make(name="Opening hours")
    only_cpap = block_make(name="CPAP cushions", purposes=[cpap])
    block_make(name="Draft", approved=False)

    assert list(content_blocks_allowed(purpose_id=cpap.pk)) == [only_cpap, everywhere]
    assert list(content_blocks_allowed(purpose_id=diabetes.pk)) == [everywhere]
