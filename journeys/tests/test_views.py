"""The journey pages (issue 14, item 6): list, builder, detail, review. Who may see and do what (deny by default;
the review page is a 404 to marketers; the author never approves), bad input answered with messages and nothing
saved (never a 500), every action a CSRF-checked POST through the services, audited with ids and codes only."""
import pytest
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign
from campaigns.tests.factories import block_make, template_make
from conftest import totp_code
from journeys.models import Journey, JourneyStep, JourneyVersion
from journeys.services.journeys import journey_reject, journey_submit
from journeys.tests.factories import journey_draft_make, journey_live_make, journey_purpose_make

pytestmark = pytest.mark.django_db


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _step(index: int, kind: str, **fields) -> dict:
    return {f"steps-{index}-kind": kind, **{f"steps-{index}-{name}": value for name, value in fields.items()}}


def builder_data(purpose=None, *, steps=None, **overrides) -> dict:
    """A complete builder form: an event trigger (equipment delivered, CPAP), send, wait 3 days, send."""
    steps = steps if steps is not None else [
        ("send", {"subject": "How is your new CPAP?", "body_text": "Hello {{ first_name }}, a quick check-in."}),
        ("wait", {"wait_days": "3", "wait_hours": "0"}),
        ("send", {"subject": "Tips for your CPAP", "body_text": "Three tips for a better night."}),
    ]
    data = {
        "builder": "save",
        "name": "CPAP follow-up",
        "trigger": "event",
        "event_type": "equipment.delivered",
        "condition_1_attribute": "equipment_type",
        "condition_1_value": "CPAP",
        "reentry": "after_exit",
        "conversion_days": "30",
        "holdout_percent": "0",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "20",
    }
    if purpose is not None:
        data["purpose"] = str(purpose.pk)
    for index, (kind, fields) in enumerate(steps):
        data |= _step(index, kind, **fields)
    return data | overrides


@pytest.fixture
def purpose():
    return journey_purpose_make(name="CPAP supplies")


def _actions(journey) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="journey", object_id=str(journey.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- URLs and access ---------------------------------------------------------------------------------------


def test_urls_are_named_in_the_journeys_namespace():
    assert reverse("journeys:list") == "/journeys/"
    assert reverse("journeys:new") == "/journeys/new/"
    assert reverse("journeys:detail", args=[4]) == "/journeys/4/"
    assert reverse("journeys:edit", args=[4]) == "/journeys/4/edit/"
    assert reverse("journeys:review", args=[4]) == "/journeys/4/review/"
    assert reverse("journeys:results", args=[4]) == "/journeys/4/results/"


@pytest.mark.parametrize("path", ["/journeys/", "/journeys/new/", "/journeys/{id}/", "/journeys/{id}/edit/",
                                  "/journeys/{id}/review/", "/journeys/{id}/results/"])
def test_every_page_needs_a_verified_staff_member(client, purpose, path):
    journey = journey_draft_make(purpose=purpose)

    response = client.get(path.format(id=journey.pk))

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_list_shows_journeys_with_status_and_a_new_button(verified_client, purpose):
    verified_client.sign_in(role="marketer")
    live = journey_live_make(purpose=purpose, name="CPAP follow-up")
    journey_draft_make(purpose=purpose, name="Refill reminder")

    page = verified_client.get("/journeys/").content.decode()

    assert "CPAP follow-up" in page and "Refill reminder" in page
    assert 'href="/journeys/new/"' in page
    assert f'href="/journeys/{live.pk}/"' in page and "Version 1" in page
    assert "Waiting for your review" not in page  # marketers review nothing


def test_list_shows_compliance_officers_what_waits_for_their_review(verified_client, purpose):
    verified_client.sign_in(role="compliance officer")
    journey = journey_draft_make(purpose=purpose, name="Refill reminder")
    journey_submit(actor=journey.created_by, journey_id=journey.pk)

    page = verified_client.get("/journeys/").content.decode()

    assert "Waiting for your review" in page
    assert f'href="/journeys/{journey.pk}/review/"' in page


def test_missing_journey_is_a_404(verified_client):
    verified_client.sign_in(role="marketer")

    assert verified_client.get("/journeys/999999/").status_code == 404
    assert verified_client.get("/journeys/999999/edit/").status_code == 404


# --- The builder -------------------------------------------------------------------------------------------


def test_builder_page_lists_only_purposes_with_a_published_form(verified_client, purpose):
    from consent.tests.factories import purpose_make

    unpublished = purpose_make(name="No form yet")
    verified_client.sign_in(role="marketer")

    page = verified_client.get("/journeys/new/").content.decode()

    assert f'<option value="{purpose.pk}">CPAP supplies</option>' in page
    assert unpublished.name not in page
    assert 'id="step-template-send"' in page and "journey-builder.js" in page


def test_marketer_builds_a_journey_and_it_is_saved_as_a_draft(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")

    response = verified_client.post("/journeys/new/", builder_data(purpose))

    journey = Journey.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/journeys/{journey.pk}/"
    version = journey.versions.get()
    assert (journey.name, journey.status, version.status, version.created_by_id) == (
        "CPAP follow-up", "draft", "draft", marketer.pk)
    assert (version.event_type, version.event_conditions) == ("equipment.delivered", {"equipment_type": "CPAP"})
    steps = list(version.steps.order_by("position").values_list("kind", "wait_minutes"))
    assert steps == [("send", 0), ("wait", 3 * 1440), ("send", 0)]
    first = version.steps.get(position=1).campaign
    assert (first.kind, first.subject, first.body_text) == (
        "journey_step", "How is your new CPAP?", "Hello {{ first_name }}, a quick check-in.")
    assert _actions(journey) == ["journey.created", "journey.version_created"]


def test_branch_targets_and_local_time_are_saved(verified_client, purpose):
    verified_client.sign_in(role="marketer")
    steps = [
        ("send", {"subject": "How is your CPAP?", "body_text": "Checking in."}),
        ("wait", {"wait_days": "1", "wait_hours": "2", "until_local_time": "10:00"}),
        ("branch", {"branch_on": "event", "branch_event_type": "appointment.booked", "branch_days": "7",
                    "yes_target": "5", "no_target": "4"}),
        ("send", {"subject": "Book a fitting", "body_text": "Call us.", "next_target": "end"}),
        ("exit", {}),
    ]

    response = verified_client.post("/journeys/new/", builder_data(purpose, steps=steps))

    assert response.status_code == 302
    version = JourneyVersion.objects.get()
    wait, branch, send = (version.steps.get(position=n) for n in (2, 3, 4))
    assert (wait.wait_minutes, f"{wait.until_local_time:%H:%M}") == (1440 + 120, "10:00")
    assert (branch.branch_event_type, branch.wait_minutes, branch.yes_position, branch.no_position) == (
        "appointment.booked", 7 * 1440, 5, 4)
    assert send.next_position == 6  # past the last step: the journey is complete


def test_every_problem_is_listed_at_the_top_and_nothing_is_saved(verified_client, purpose):
    verified_client.sign_in(role="marketer")
    steps = [
        ("send", {"subject": "", "body_text": "Hello"}),
        ("wait", {"wait_days": "0", "wait_hours": "0"}),
        ("branch", {"branch_on": "event", "branch_event_type": "", "branch_days": "7", "yes_target": "1"}),
    ]
    data = builder_data(purpose, steps=steps, event_type="", holdout_percent="20")

    response = verified_client.post("/journeys/new/", data)

    page = response.content.decode()
    assert response.status_code == 200
    assert "The journey was not saved" in page
    for problem in [
        "Choose the care event that starts the journey.",
        "A control group needs a goal to compare",
        "Step 1: the message needs a subject.",
        "Step 2: say how long to wait, or until what time of day.",
        "Step 3: a branch waits for a care event or a click.",
        "Step 3: the step if it happened must be a later step (steps only go forward).",
    ]:
        assert problem in page
    assert not Journey.objects.exists() and not Campaign.objects.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"holdout_percent": "lots"},
        {"holdout_percent": "99"},
        {"reentry_days": "999999999"},
        {"offset_days": "-5"},
        {"trigger": "rocket"},
        {"purpose": "999999"},
        {"steps-0-kind": "teleport"},
        {"steps-0-template": "999999"},
        {"steps-1-wait_days": "1e9"},
        {"steps-1-until_local_time": "25:99"},
        {"steps-0-next_target": "99"},
        {"steps-TOTAL_FORMS": "abc"},
        {"steps-TOTAL_FORMS": "100"},
        {"condition_1_value": ""},
        {"condition_1_attribute": "cancel_reason", "condition_1_value": "weather"},
        {"condition_1_value": "not a code!"},
        {"steps-0-body_text": "Hello {{ first_name"},
        {"steps-0-subject": "x" * 500},
        {"name": ""},
    ],
)
def test_bad_input_gets_messages_never_a_500_and_saves_nothing(verified_client, purpose, overrides):
    verified_client.sign_in(role="marketer")

    response = verified_client.post("/journeys/new/", builder_data(purpose) | overrides)

    assert response.status_code == 200
    assert "The journey was not saved" in response.content.decode()
    assert not Journey.objects.exists() and not Campaign.objects.exists()


def test_merge_field_outside_the_form_is_shown_in_the_preview_and_refused_at_submission(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    steps = [("send", {"subject": "Hi", "body_text": "Your last visit was {{ last_visit }}."})]
    data = builder_data(purpose, steps=steps, builder="add:wait")

    page = verified_client.post("/journeys/new/", data).content.decode()

    # The live preview's scope message, as the campaign editor shows it: the regulation cited, no internal rule id.
    assert "45 CFR 164.508(c)(1)(i)" in page and "R-SEND-SCOPE" not in page
    assert not Journey.objects.exists()
    verified_client.post("/journeys/new/", builder_data(purpose, steps=steps))
    journey = Journey.objects.get()
    response = verified_client.post(f"/journeys/{journey.pk}/submit/", follow=True)
    assert "Not submitted: Step 1:" in response.content.decode()
    assert journey.versions.get().status == "draft"
    assert AuditEvent.objects.get(action="journey.submit_refused").actor_id == marketer.pk


def test_builder_buttons_add_move_and_remove_steps_without_saving(verified_client, purpose):
    verified_client.sign_in(role="marketer")
    steps = [
        ("send", {"subject": "First", "body_text": "One"}),
        ("branch", {"branch_on": "event", "branch_event_type": "appointment.booked", "branch_days": "7",
                    "yes_target": "4"}),
        ("send", {"subject": "Second", "body_text": "Two"}),
        ("exit", {}),
    ]

    added = verified_client.post("/journeys/new/", builder_data(purpose, steps=steps, builder="add:wait"))
    moved = verified_client.post("/journeys/new/", builder_data(purpose, steps=steps, builder="up:2"))

    assert added.status_code == 200 and 'name="steps-TOTAL_FORMS" value="5"' in added.content.decode()
    page = moved.content.decode()
    # Step 3 ("Second") moved above the branch; the branch's "yes" still points at the exit step (4).
    assert page.index('value="First"') < page.index('value="Second"')
    assert page.index('value="Second"') < page.index('name="steps-2-branch_days"')
    assert '<option value="4" selected>step 4</option>' in page
    assert "The journey was not saved" not in page
    assert not Journey.objects.exists()


def test_editing_a_live_journey_makes_a_new_version(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    journey = journey_live_make(purpose=purpose, author=marketer)

    page = verified_client.get(f"/journeys/{journey.pk}/edit/").content.decode()
    response = verified_client.post(f"/journeys/{journey.pk}/edit/", builder_data(name="CPAP follow-up, v2"))

    assert 'value="How is your new CPAP?"' in page  # the builder starts from the live version
    assert response.status_code == 302
    journey.refresh_from_db()
    assert list(journey.versions.order_by("number").values_list("number", "status")) == [
        (1, "approved"), (2, "draft")]
    assert journey.live_version.number == 1 and journey.name == "CPAP follow-up, v2"


def test_a_submitted_version_cannot_be_edited(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    journey = journey_draft_make(purpose=purpose, author=marketer)
    journey_submit(actor=marketer, journey_id=journey.pk)

    page = verified_client.get(f"/journeys/{journey.pk}/edit/").content.decode()
    response = verified_client.post(f"/journeys/{journey.pk}/edit/", builder_data(name="Sneaky"))

    assert "waits for review" in page
    assert response.status_code == 200 and "nothing was saved" in response.content.decode()
    journey.refresh_from_db()
    assert journey.name != "Sneaky" and "journey.version_updated" not in _actions(journey)


def test_template_and_blocks_from_the_library_are_saved_in_order(verified_client, purpose):
    verified_client.sign_in(role="marketer")
    template = template_make(name="Riverside standard")
    first, second = block_make(name="Cushions"), block_make(name="Filters")
    steps = [("send", {"subject": "Supplies", "template": str(template.pk), "block_1": str(second.pk),
                       "block_2": str(first.pk)})]

    response = verified_client.post("/journeys/new/", builder_data(purpose, steps=steps))

    assert response.status_code == 302
    campaign = JourneyStep.objects.get().campaign
    assert campaign.template_id == template.pk
    assert list(campaign.content_blocks.order_by("position").values_list("block_id", flat=True)) == [
        second.pk, first.pk]


# --- Detail, submit, pause, resume, stop -------------------------------------------------------------------


def test_detail_draws_the_flow_and_offers_submit(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    journey = journey_draft_make(purpose=purpose, author=marketer)

    page = verified_client.get(f"/journeys/{journey.pk}/").content.decode()

    assert "Send “How is your new CPAP?”" in page
    assert "Wait 3 days" in page
    assert "When the care event “Equipment delivered” is recorded" in page
    assert f'action="/journeys/{journey.pk}/submit/"' in page
    assert "Pause" not in page and "Stop the journey" not in page  # marketers do not control sending


def test_author_submits_and_the_rejected_comment_is_shown_at_the_top(verified_client, purpose):
    marketer = verified_client.sign_in(role="marketer")
    journey = journey_draft_make(purpose=purpose, author=marketer)

    verified_client.post(f"/journeys/{journey.pk}/submit/")
    journey_reject(actor=staff_make(role="compliance officer"), journey_id=journey.pk, comment="Say who we are.")
    page = verified_client.get(f"/journeys/{journey.pk}/").content.decode()

    assert "Version 1 was rejected: change it and submit it again" in page
    assert "Say who we are." in page
    assert _actions(journey)[-2:] == ["journey.submitted", "journey.rejected"]


def test_compliance_officer_pauses_resumes_and_stops_with_confirmation(verified_client, purpose):
    verified_client.sign_in(role="compliance officer")
    journey = journey_live_make(purpose=purpose)

    page = verified_client.get(f"/journeys/{journey.pk}/").content.decode()
    verified_client.post(f"/journeys/{journey.pk}/pause/")
    paused = Journey.objects.get(pk=journey.pk).status
    verified_client.post(f"/journeys/{journey.pk}/resume/")
    unconfirmed = verified_client.post(f"/journeys/{journey.pk}/stop/")
    still = Journey.objects.get(pk=journey.pk).status
    verified_client.post(f"/journeys/{journey.pk}/stop/", {"confirm": "on"})

    assert "Stop the journey" in page and "Pause" in page
    assert (paused, still, Journey.objects.get(pk=journey.pk).status) == ("paused", "active", "stopped")
    assert unconfirmed.status_code == 400 and "Tick the box to confirm" in unconfirmed.content.decode()
    assert _actions(journey)[-3:] == ["journey.paused", "journey.resumed", "journey.stopped"]


@pytest.mark.parametrize("action", ["pause", "resume", "stop"])
def test_marketers_cannot_pause_resume_or_stop(verified_client, purpose, action):
    verified_client.sign_in(role="marketer")
    journey = journey_live_make(purpose=purpose)

    response = verified_client.post(f"/journeys/{journey.pk}/{action}/", {"confirm": "on"})

    assert response.status_code == 404
    assert Journey.objects.get(pk=journey.pk).status == "active"


@pytest.mark.parametrize("action", ["submit", "pause", "resume", "stop"])
def test_actions_are_posts_only(verified_client, purpose, action):
    verified_client.sign_in(role="compliance officer")
    journey = journey_live_make(purpose=purpose)

    assert verified_client.get(f"/journeys/{journey.pk}/{action}/").status_code == 405


@pytest.mark.parametrize("path", ["/journeys/new/", "/journeys/{id}/submit/", "/journeys/{id}/pause/",
                                  "/journeys/{id}/stop/", "/journeys/{id}/review/"])
def test_posts_without_the_csrf_token_are_refused(purpose, path):
    officer = staff_make(role="compliance officer", with_totp=True)
    journey = journey_live_make(purpose=purpose)
    client = Client(enforce_csrf_checks=True)
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(officer)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.get(user=officer).persistent_id
    session.save()

    response = client.post(path.format(id=journey.pk), {"confirm": "on", "decision": "reject", "comment": "x"})

    assert response.status_code == 403
    assert Journey.objects.get(pk=journey.pk).status == "active"
    assert Journey.objects.count() == 1


# --- Review ------------------------------------------------------------------------------------------------


def _submitted(purpose, author=None):
    journey = journey_draft_make(purpose=purpose, author=author)
    journey_submit(actor=journey.created_by, journey_id=journey.pk)
    return journey


def test_review_page_is_a_404_for_marketers(verified_client, purpose):
    verified_client.sign_in(role="marketer")
    journey = _submitted(purpose)

    assert verified_client.get(f"/journeys/{journey.pk}/review/").status_code == 404
    assert verified_client.post(f"/journeys/{journey.pk}/review/", {"decision": "reject", "comment": "No"}).status_code == 404
    assert journey.versions.get().status == "submitted"


def test_review_shows_the_trigger_in_words_and_each_message_with_the_synthetic_patient(verified_client, purpose):
    verified_client.sign_in(role="compliance officer")
    journey = _submitted(purpose)

    page = verified_client.get(f"/journeys/{journey.pk}/review/").content.decode()

    assert "When the care event “Equipment delivered” is recorded" in page
    assert page.count('class="content-preview"') == 2  # two messages
    assert "As Alex Sample would see it" in page
    assert 'title="Step 1: email preview (HTML part)"' in page and 'title="Step 3: email preview (HTML part)"' in page


def test_officer_approves_with_the_second_factor_again(verified_client, purpose):
    officer = verified_client.sign_in(role="compliance officer")
    journey = _submitted(purpose)

    wrong = verified_client.post(f"/journeys/{journey.pk}/review/",
                                 {"decision": "approve", "approve-code": _wrong(totp_code(officer))})
    assert wrong.status_code == 200 and "That code did not work" in wrong.content.decode()
    assert journey.versions.get().status == "submitted"
    refused = AuditEvent.objects.get(action="mfa.reentry_failed")
    assert (refused.object_type, refused.details) == ("journey", {"for": "journey.approve"})

    response = verified_client.post(f"/journeys/{journey.pk}/review/",
                                    {"decision": "approve", "approve-code": totp_code(officer)})

    assert response.status_code == 302 and response["Location"] == f"/journeys/{journey.pk}/"
    journey.refresh_from_db()
    assert (journey.status, journey.live_version.approved_by_id) == ("active", officer.pk)


def test_r_sec_mfa_a_journey_approved_within_the_step_up_grace_needs_no_second_code(verified_client, purpose):
    """R-SEC-MFA with the grace (ADR 0024): a code shown for one action spares the next for a few minutes, as on a
    campaign's review page; the pass is audited as by grace."""
    officer = verified_client.sign_in(role="compliance officer")
    first, second = _submitted(purpose), _submitted(purpose)
    assert verified_client.post(f"/journeys/{first.pk}/review/",
                                {"decision": "approve", "approve-code": totp_code(officer)}).status_code == 302

    response = verified_client.post(f"/journeys/{second.pk}/review/", {"decision": "approve", "approve-code": ""})

    assert response.status_code == 302
    second.refresh_from_db()
    assert second.status == "active"
    passes = list(AuditEvent.objects.filter(action="mfa.reentry_passed").order_by("id").values_list("details", flat=True))
    assert [details["by"] for details in passes] == ["code", "grace"]


def test_the_author_cannot_approve_and_is_told_so(verified_client, purpose):
    officer = verified_client.sign_in(role="compliance officer")
    journey = _submitted(purpose, author=officer)

    page = verified_client.get(f"/journeys/{journey.pk}/review/").content.decode()
    response = verified_client.post(f"/journeys/{journey.pk}/review/",
                                    {"decision": "approve", "approve-code": totp_code(officer)})

    assert "You wrote this version, so you cannot approve it" in page
    assert response.status_code == 403
    assert "you cannot approve it: another compliance officer or an administrator must" in response.content.decode()
    assert journey.versions.get().status == "submitted"
    assert AuditEvent.objects.get(action="journey.approve_refused").details == {"version": 1, "reason": "author"}


def test_reject_needs_a_comment(verified_client, purpose):
    verified_client.sign_in(role="compliance officer")
    journey = _submitted(purpose)

    empty = verified_client.post(f"/journeys/{journey.pk}/review/", {"decision": "reject", "comment": "  "})
    response = verified_client.post(f"/journeys/{journey.pk}/review/",
                                    {"decision": "reject", "comment": "Name the clinic in the first message."})

    assert empty.status_code == 200 and "the comment is required" in empty.content.decode()
    assert response.status_code == 302
    version = journey.versions.get()
    assert (version.status, version.review_comment) == ("rejected", "Name the clinic in the first message.")
    assert AuditEvent.objects.get(action="journey.rejected").details == {"version": 1, "comment_length": 37}


def test_nav_links_to_journeys_for_every_staff_role(verified_client):
    for role in ("marketer", "compliance officer", "administrator"):
        verified_client.sign_in(role=role)
        assert 'href="/journeys/">Journeys</a>' in verified_client.get("/journeys/").content.decode()


def test_the_flow_is_drawn_in_words_with_branches_and_jumps(verified_client, purpose):
    from journeys.services.journeys import StepSpec

    verified_client.sign_in(role="marketer")
    journey = journey_draft_make(purpose=purpose, steps=[
        StepSpec(kind="send", subject="How is your CPAP?", body_text="Checking in."),
        StepSpec(kind="wait", wait_minutes=3 * 1440),
        StepSpec(kind="branch", branch_event_type="appointment.booked", wait_minutes=7 * 1440, yes_position=5),
        StepSpec(kind="send", subject="Book a fitting", body_text="Call us.", next_position=6),
        StepSpec(kind="exit"),
    ])

    page = verified_client.get(f"/journeys/{journey.pk}/").content.decode()

    assert "Send “How is your CPAP?”" in page and "Wait 3 days" in page
    assert "Branch: Appointment booked within 7 days? yes → 5 / no → 4" in page
    assert "then → end" in page
    assert ">Exit<" in page
