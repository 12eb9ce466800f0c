"""Demo data for the zero-service demo (`make run`): staff with a second factor, purposes, ~300 synthetic
patients with authorizations in every state, a content library (an approved email template, approved blocks and
a draft block), a draft campaign and a launched one, both built from the library.

Everything about consent and campaigns goes through the real services (consent.services, campaigns.services),
so the demo data carries the same audit trail and evidence as real use. Only the staff accounts, their verified
email addresses, group memberships and OTP devices are written directly, as accounts/tests/factories.py does.

Idempotent: when the demo purposes exist, the command changes nothing (delete var/demo.sqlite3 to start over).

Reproducible: patients come from a seeded random generator, and the staff TOTP secrets are fixed:

    user                              hex key (TOTPDevice.key)                   base32 (authenticator app)
    marketer@demo.hipaamail.test      68697061616d61696c2d64656d6f2d6d6b742d31   NBUXAYLBNVQWS3BNMRSW23ZNNVVXILJR
    compliance@demo.hipaamail.test    68697061616d61696c2d64656d6f2d636d702d31   NBUXAYLBNVQWS3BNMRSW23ZNMNWXALJR
    admin@demo.hipaamail.test         68697061616d61696c2d64656d6f2d61646d2d31   NBUXAYLBNVQWS3BNMRSW23ZNMFSG2LJR

(the keys are the ASCII bytes of "hipaamail-demo-mkt-1", "-cmp-1", "-adm-1"). Each user also has a static
recovery-codes device with the ten codes demo-recovery-01 ... demo-recovery-10 (each works once).
`python manage.py demo_totp EMAIL` prints the current TOTP code of a user (only with DEBUG on).

The launched campaign is handed to the workers when its launch commits (a running `celery worker` sends it);
`--send-now` sends it in this process instead, through the same sender.
"""
import random
from base64 import b32encode
from dataclasses import dataclass
from datetime import time, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import roles
from accounts.mfa import AUTHENTICATOR_APP_NAME, RECOVERY_CODES_NAME
from api.keys import api_key_create, api_key_secret_digest
from api.models import ApiKey
from api.scopes import SCOPES
from campaigns.models import Campaign
from campaigns.selectors import campaigns as campaign_selectors
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services import library as services_content
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_approve, campaign_create, campaign_submit
from consent.documents import form_text, text_hash
from consent.models import Authorization, Patient, Purpose, Revocation
from consent.services import form_versions
from consent.services.authorizations import authorization_grant, authorization_revoke
from consent.services.events import patient_event_record
from consent.services.form_versions import purpose_create
from consent.services.patients import patient_create
from journeys.models import StepKind, Trigger
from journeys.services.journeys import StepSpec, journey_approve, journey_create, journey_submit
from journeys.validation import TriggerSpec

DEMO_PASSWORD = "demo-password-2026"
# The demo's integration key: fixed so that the README's curl examples run against `make run` as printed. Demo
# data only: a real key's secret is random and shown once.
DEMO_API_PREFIX = "demo2026"
DEMO_API_SECRET = "riverside-demo-integration-key"
DEMO_API_TOKEN = f"hm_{DEMO_API_PREFIX}_{DEMO_API_SECRET}"
RECOVERY_CODES = [f"demo-recovery-{n:02d}" for n in range(1, 11)]
SEED = 2026
PATIENT_COUNT = 300


@dataclass(frozen=True)
class DemoStaff:
    email: str
    username: str
    role: str
    totp_key_hex: str
    superuser: bool = False


MARKETER = DemoStaff(
    "marketer@demo.hipaamail.test", "demo-marketer", roles.MARKETER, "68697061616d61696c2d64656d6f2d6d6b742d31"
)
COMPLIANCE = DemoStaff(
    "compliance@demo.hipaamail.test",
    "demo-compliance",
    roles.COMPLIANCE_OFFICER,
    "68697061616d61696c2d64656d6f2d636d702d31",
)
ADMIN = DemoStaff(
    "admin@demo.hipaamail.test",
    "demo-admin",
    roles.ADMINISTRATOR,
    "68697061616d61696c2d64656d6f2d61646d2d31",
    superuser=True,
)
STAFF = (MARKETER, COMPLIANCE, ADMIN)

CPAP, DIABETES, REFILLS = "cpap-supplies", "diabetes-program", "refill-reminders"
PURPOSES = {
    CPAP: {
        "name": "CPAP supplies",
        "description": "Offers of replacement masks, tubing and filters for patients on CPAP therapy.",
        "kind": Purpose.Kind.MARKETING,
    },
    DIABETES: {
        "name": "Diabetes education program",
        "description": "A diabetes self-management program sponsored by a third party, who pays for the mailing.",
        "kind": Purpose.Kind.MARKETING,
        "third_party_paid": True,
    },
    REFILLS: {
        "name": "Prescription refill reminders",
        "description": "Reminders to refill a prescription the patient already has.",
        "kind": Purpose.Kind.TREATMENT,
    },
}
DRAFT_CAMPAIGN = "Spring CPAP supplies refresh"
WELCOME_JOURNEY = "CPAP welcome after delivery"
REFILL_JOURNEY = "Refill reminder a week ahead"
DRAFT_JOURNEY = "Diabetes program first weeks"
LAUNCHED_CAMPAIGN = "Diabetes education program"

# The content library: one template and a few blocks, written and approved by the compliance officer.
TEMPLATE = {
    "name": "Riverside Health standard",
    "header_html": '<p class="brand">Riverside Health</p>',
    "footer_html": (
        "<p>Questions? Call us at <a href=\"tel:+12175550100\">217-555-0100</a>, Monday to Friday, 8 am to 6 pm.</p>"
    ),
    "css": (
        ".header { border-bottom: 4px solid #0b6bcb; margin-bottom: 16px; }\n"
        ".brand { font-size: 22px; font-weight: bold; color: #10243e; margin: 0 0 8px; }\n"
        ".content h2 { font-size: 20px; color: #10243e; }\n"
        ".footer { border-top: 1px solid #d5dbe1; margin-top: 24px; font-size: 15px; color: #444444; }"
    ),
}
BLOCKS = {
    "cpap-supplies": (
        "CPAP supplies: what to replace and when",
        "<h2>Fresh supplies, better sleep</h2><p>Masks, cushions and filters wear out. Most plans cover:</p>"
        "<ul><li>a new mask cushion every month</li><li>new filters every two weeks</li>"
        "<li>new tubing every three months</li></ul>",
    ),
    "cpap-order": (
        "CPAP supplies: how to order",
        '<p><a href="https://riverside-health.example/cpap">Order online</a> or call us, and we ship to your home '
        "within two days.</p>",
    ),
    "diabetes-program": (
        "Diabetes program: what you learn",
        "<h2>Eight Tuesday evenings</h2><p>Our diabetes educators cover meal planning, checking your glucose and "
        "staying active. Sessions are at the Riverside Health community room, 6 to 7:30 pm.</p>"
        '<p><a href="https://riverside-health.example/diabetes">Save your seat</a></p>',
    ),
}
DRAFT_BLOCK = (
    "Flu season: vaccination hours (draft)",
    "<p>This autumn our clinics give flu shots without an appointment, weekdays from 8 am.</p>",
)

# States of one patient's authorization for one purpose.
VALID, EXPIRED, REVOKED, RENEWED, NONE = "valid", "expired", "revoked", "renewed", "none"

# The first patients have these fixed profiles, so every state (and every reason a diabetes-program
# message is blocked) is present whatever the random draw gives the others.
FIXED_PROFILES = [
    {CPAP: VALID, DIABETES: VALID, REFILLS: VALID},
    {DIABETES: VALID},
    {CPAP: VALID},  # wrong purpose for the diabetes campaign
    {REFILLS: VALID},  # wrong purpose: a treatment consent is not a marketing authorization
    {DIABETES: EXPIRED},
    {DIABETES: REVOKED},
    {DIABETES: REVOKED},
    {},  # no authorization at all
    {CPAP: EXPIRED, REFILLS: REVOKED},
    {CPAP: REVOKED, DIABETES: VALID},
    {CPAP: VALID, DIABETES: EXPIRED},
    {DIABETES: RENEWED},  # an expired authorization followed by a new one: covered
    {CPAP: REVOKED, REFILLS: VALID},
    {CPAP: EXPIRED},
]

FIRST_NAMES = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "William", "Mia", "Benjamin",
    "Charlotte", "Lucas", "Amelia", "Henry", "Harper", "Theodore", "Evelyn", "Jack", "Abigail", "Levi", "Emily",
    "Alexander", "Ella", "Jackson", "Elizabeth", "Mateo", "Camila", "Daniel", "Luna", "Michael", "Sofia", "Mason",
    "Avery", "Sebastian", "Mila", "Ethan", "Aria", "Logan", "Scarlett", "Owen", "Penelope", "Samuel", "Layla",
    "Maria", "Jose", "Wei", "Priya", "Ahmed", "Fatima", "Hiroshi", "Yuki", "Dmitri", "Anya", "Kwame", "Amara",
    "Margaret", "Robert", "Patricia", "Richard", "Linda", "Thomas", "Barbara", "Charles", "Dorothy", "Joseph",
]  # fmt: skip
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson",
    "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Chen", "Patel", "Kim", "Okafor",
    "Kowalski", "Novak", "Schmidt", "Rossi", "Haddad", "Tanaka", "O'Brien", "Murphy", "Sullivan", "Bennett",
]  # fmt: skip
POSTAL_CODES = [
    "62701", "62702", "62703", "62704", "62707", "62711", "62712", "62629", "62650", "62656", "62670", "62675",
]  # fmt: skip


# The published form of each purpose: every element 45 CFR 164.508(c) asks for, in plain words.
_FORM_COMMON = {
    "authorized_party": "Riverside Health, 100 River Road, Springfield, IL 62701.",
    "recipients_description": "Our email service, which has signed a business associate agreement with us.",
    "signature_statement": (
        "Typing your name is your signature. If you sign for someone else, tell us how you are allowed to act "
        "for them (your authority as their personal representative)."
    ),
    "revocation_statement": (
        "You can stop this at any time. Use the link at the end of any of our messages, sign in to our patient "
        "page, or write to us. Stopping does not undo what we already did before you told us."
    ),
    "revocation_address": "Privacy Officer, Riverside Health, 100 River Road, Springfield, IL 62701",
    "conditioning_statement": "Your care, payment, enrollment and benefits do not depend on signing this form.",
    "redisclosure_statement": (
        "Information we share under this form may be shared again by the one who gets it. Then the privacy law "
        "may no longer protect it."
    ),
    "expiry_kind": "months",
    "expiry_months": 24,
}
FORMS = {
    CPAP: {
        "title": "Permission to send you offers of CPAP supplies",
        "information_description": "Your name, your email address, and the fact that you use a CPAP machine from us.",
        "merge_fields": ["first_name", "email"],
        "purpose_description": "To tell you about masks, tubing and filters for your CPAP machine that you can buy.",
    },
    DIABETES: {
        "title": "Permission to send you news of a diabetes program",
        "information_description": "Your name, your email address, and the fact that you have diabetes.",
        "merge_fields": ["first_name", "email", "condition_codes"],
        "purpose_description": "To tell you about a diabetes self-care program and how to join it.",
        "remuneration_statement": "A company pays us to send these messages. It makes diabetes products.",
    },
    REFILLS: {
        "title": "Permission to email you refill reminders",
        "information_description": "Your name, your email address, and the medicines you have a prescription for.",
        "merge_fields": ["first_name", "email"],
        "purpose_description": "To remind you when it is time to refill a prescription you already have.",
    },
}


class Command(BaseCommand):
    help = "Create the demo data (staff with 2FA, purposes, ~300 synthetic patients, two campaigns). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--send-now",
            action="store_true",
            help="Send the launched campaign in this process (through the one sender) instead of leaving it "
            "to a Celery worker.",
        )
        parser.add_argument("--patients", type=int, default=PATIENT_COUNT, help="How many patients (default 300).")

    def handle(self, *args, send_now: bool = False, patients: int = PATIENT_COUNT, **options):
        self.verbosity = options.get("verbosity", 1)
        if Purpose.objects.filter(code__in=list(PURPOSES)).exists():
            self._say("Demo data already present: nothing to do (delete var/demo.sqlite3 to start over).")
            self._print_summary()
            return

        staff = {member.email: self._staff_make(member) for member in STAFF}
        marketer, compliance, admin = (staff[m.email] for m in (MARKETER, COMPLIANCE, ADMIN))
        self._say(f"Staff: {', '.join(staff)}")

        purposes = {
            code: purpose_create(actor=admin, code=code, **fields)
            for code, fields in PURPOSES.items()
        }
        self._say(f"Purposes: {', '.join(purposes)}")
        self.forms = {code: self._form_publish(purpose, compliance) for code, purpose in purposes.items()}

        counts = self._patients_make(count=patients, purposes=purposes, admin=admin, compliance=compliance)
        for code in purposes:
            self._say(
                f"  {code:17} "
                + ", ".join(f"{state} {counts[code][state]}" for state in (VALID, RENEWED, EXPIRED, REVOKED, NONE))
            )

        template, blocks = self._library_make(compliance)
        campaign_create(
            actor=marketer,
            name=DRAFT_CAMPAIGN,
            purpose=purposes[CPAP],
            subject="Time to refresh your CPAP supplies",
            body_text=(
                "Dear {{ first_name }},\n\nThis spring, order fresh CPAP supplies from Riverside Health and sleep "
                "better."
            ),
            template=template,
            blocks=[blocks["cpap-supplies"], blocks["cpap-order"]],
        )
        campaign = campaign_create(
            actor=marketer,
            name=LAUNCHED_CAMPAIGN,
            purpose=purposes[DIABETES],
            subject="Join our free diabetes education program",
            body_text="Dear {{ first_name }},\n\nOur diabetes educators run a free eight-week program.",
            template=template,
            blocks=[blocks["diabetes-program"]],
        )
        self._api_key_make(admin)
        self._journeys_make(purposes=purposes, marketer=marketer, compliance=compliance, template=template, blocks=blocks)
        campaign_submit(actor=marketer, campaign_id=campaign.pk)
        campaign_approve(actor=compliance, campaign_id=campaign.pk)
        # The launch wakes the workers when it commits: a running `celery worker` sends the campaign.
        campaign_launch(actor=compliance, campaign_id=campaign.pk)
        self._say(f'Campaigns: "{DRAFT_CAMPAIGN}" (draft), "{LAUNCHED_CAMPAIGN}" (submitted, approved, launched)')

        if send_now:
            while delivery_dispatch_batch(campaign_id=campaign.pk):
                pass
            campaign_finish_if_done(campaign_id=campaign.pk)
        outcome = campaign_selectors.delivery_outcome_counts(campaign_id=campaign.pk)
        self._say(f'"{LAUNCHED_CAMPAIGN}": ' + ", ".join(f"{key} {n}" for key, n in sorted(outcome.items())))
        if not send_now:
            self._say("  (queued deliveries are sent by the Celery worker; messages go to var/outbox/)")
        self._print_summary()

    # --- integration API --------------------------------------------------------------------------------

    def _api_key_make(self, admin) -> None:
        issued = api_key_create(actor=admin, name="Demo EHR", source="demo-ehr", scopes=list(SCOPES))
        ApiKey.objects.filter(pk=issued.key.pk).update(
            prefix=DEMO_API_PREFIX, secret_hash=api_key_secret_digest(DEMO_API_SECRET)
        )
        self._say("Integration API: one key with every scope (printed below)")

    # --- content library ---------------------------------------------------------------------------------

    def _library_make(self, compliance):
        """The template and blocks, approved by the compliance officer, and one block left in draft."""
        template = services_content.email_template_create(actor=compliance, **TEMPLATE)
        template = services_content.library_item_approve(actor=compliance, kind="template", item_id=template.pk)
        blocks = {}
        for key, (name, html) in BLOCKS.items():
            block = services_content.content_block_create(actor=compliance, name=name, html=html)
            blocks[key] = services_content.library_item_approve(actor=compliance, kind="block", item_id=block.pk)
        services_content.content_block_create(actor=compliance, name=DRAFT_BLOCK[0], html=DRAFT_BLOCK[1])
        self._say(f"Content library: 1 template, {len(blocks)} approved blocks, 1 draft block")
        return template, blocks

    # --- staff -------------------------------------------------------------------------------------------

    def _staff_make(self, member: DemoStaff):
        """A staff account with a verified email, its role, a confirmed TOTP device with the documented key and
        static recovery codes. Reuses an account of the same email left by an interrupted earlier run."""
        User = get_user_model()
        with transaction.atomic():
            user = User.objects.filter(email__iexact=member.email).first()
            if user is None:
                user = User.objects.create_user(
                    username=member.username,
                    email=member.email,
                    password=DEMO_PASSWORD,
                    is_staff=member.superuser,
                    is_superuser=member.superuser,
                )
            # get_or_create: the roles migration made the groups, but a flush (or a transactional test) empties them.
            user.groups.add(Group.objects.get_or_create(name=member.role)[0])
            EmailAddress.objects.get_or_create(
                user=user, email=member.email, defaults={"verified": True, "primary": True}
            )
            if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
                TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_APP_NAME, key=member.totp_key_hex, confirmed=True)
            if not StaticDevice.objects.filter(user=user, name=RECOVERY_CODES_NAME).exists():
                device = StaticDevice.objects.create(user=user, name=RECOVERY_CODES_NAME, confirmed=True)
                StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in RECOVERY_CODES])
        return user

    # --- patients and their authorizations ---------------------------------------------------------------

    @staticmethod
    def _coded_attributes(rng: random.Random) -> dict:
        """State, conditions, programs and last visit for segments (its own random stream, so the rest of the
        demo stays as it was)."""
        return {
            "state": rng.choices(["IL", "WI", "IN"], weights=[80, 12, 8])[0],
            "condition_codes": rng.sample(["E11.9", "G47.33", "I10", "J45.20", "E66.9"], rng.randint(0, 2)),
            "program_codes": rng.sample(["DPP", "CPAP-RESUPPLY", "HEART-REHAB"], rng.choice([0, 0, 1, 1, 2])),
            "last_visit": timezone.localdate() - timedelta(days=rng.randint(5, 900)),
        }

    def _patients_make(self, *, count: int, purposes: dict, admin, compliance) -> dict[str, dict[str, int]]:
        """Create the patients and grant their authorizations, then revoke some. Returns counts by state."""
        rng = random.Random(SEED)
        now = timezone.now()
        counts = {code: dict.fromkeys((VALID, RENEWED, EXPIRED, REVOKED, NONE), 0) for code in purposes}
        to_revoke: list[tuple[int, int]] = []
        with transaction.atomic():  # one transaction for speed; the revocations below need their own
            for n in range(count):
                profile = FIXED_PROFILES[n] if n < len(FIXED_PROFILES) else self._random_profile(rng)
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                local = f"{first}.{last}".lower().replace("'", "")
                patient = patient_create(
                    actor=admin,
                    email=f"{local}{n + 1}@example.{'org' if n % 3 else 'net'}",
                    full_name=f"{first} {last}",
                    birth_year=rng.randint(1938, 2004),
                    sex=rng.choices(["F", "M", "X"], weights=[50, 47, 3])[0],
                    postal_code=rng.choice(POSTAL_CODES),
                    **self._coded_attributes(random.Random(SEED * 1000 + n)),
                    **self._journey_dates(random.Random(SEED * 7000 + n), today=now.date()),
                )
                for code, purpose in purposes.items():
                    state = profile.get(code, NONE)
                    counts[code][state] += 1
                    if state == NONE:
                        continue
                    if state in (EXPIRED, RENEWED):
                        signed = now - timedelta(days=rng.randint(420, 900))
                        self._grant(rng, patient, purpose, signed, signed + timedelta(days=365), compliance)
                    if state in (VALID, REVOKED, RENEWED):
                        signed = now - timedelta(days=rng.randint(1, 330), minutes=rng.randint(0, 1439))
                        expires = now + timedelta(days=rng.randint(60, 730))
                        self._grant(rng, patient, purpose, signed, expires, compliance)
                    if state == REVOKED:
                        to_revoke.append((patient.pk, purpose.pk))
        for patient_id, purpose_id in to_revoke:
            written = rng.random() < 0.4
            authorization_revoke(
                actor=compliance if written else None,
                patient_id=patient_id,
                purpose_id=purpose_id,
                channel=Revocation.Channel.WRITTEN if written else Revocation.Channel.PORTAL,
            )
        self._say(f"Patients: {count} (authorizations {Authorization.objects.count()}, revoked {len(to_revoke)})")
        return counts

    @staticmethod
    def _journey_dates(rng: random.Random, *, today) -> dict:
        """A refill date for about a quarter of the patients (the refill journey triggers a week before it), and a
        time zone of their own for some (journey messages keep to their quiet hours)."""
        dates: dict = {}
        if rng.random() < 0.25:
            dates["refill_due"] = today + timedelta(days=rng.randint(3, 30))
        if rng.random() < 0.2:
            dates["time_zone"] = rng.choice(["America/New_York", "America/Denver", "America/Los_Angeles"])
        return dates

    # --- journeys ----------------------------------------------------------------------------------------

    def _journeys_make(self, *, purposes, marketer, compliance, template, blocks) -> None:
        """A live CPAP welcome journey on equipment deliveries (with a branch, a goal and a 10 % control group) and
        care events for some CPAP patients; a live refill reminder a week before refill_due; a draft journey."""
        welcome = journey_create(
            actor=marketer,
            name=WELCOME_JOURNEY,
            purpose=purposes[CPAP],
            trigger=TriggerSpec(
                kind=Trigger.EVENT,
                event_type="equipment.delivered",
                event_conditions={"equipment_type": "CPAP"},
                conversion_event_type="appointment.booked",
                conversion_days=30,
                holdout_percent=10,
            ),
            steps=[
                StepSpec(
                    kind=StepKind.SEND,
                    subject="Welcome to your new CPAP",
                    body_text="Dear {{ first_name }},\n\nYour CPAP has arrived. Here is what to replace, and when.",
                    template=template,
                    blocks=(blocks["cpap-supplies"],),
                ),
                StepSpec(kind=StepKind.WAIT, wait_minutes=3 * 1440, until_local_time=time(10, 0)),
                StepSpec(
                    kind=StepKind.BRANCH,
                    branch_event_type="appointment.booked",
                    wait_minutes=7 * 1440,
                    yes_position=5,
                    no_position=4,
                ),
                StepSpec(
                    kind=StepKind.SEND,
                    subject="Book your CPAP check-up",
                    body_text="Dear {{ first_name }},\n\nA short check-up helps you sleep better with your CPAP.",
                    template=template,
                    blocks=(blocks["cpap-order"],),
                ),
                StepSpec(kind=StepKind.EXIT),
            ],
        )
        refill = journey_create(
            actor=marketer,
            name=REFILL_JOURNEY,
            purpose=purposes[REFILLS],
            trigger=TriggerSpec(kind=Trigger.DATE, date_field="refill_due", offset_days=-7),
            steps=[
                StepSpec(
                    kind=StepKind.SEND,
                    subject="Your refill is due next week",
                    body_text="Dear {{ first_name }},\n\nYour next refill is due in a week. Reply or call to order it.",
                    template=template,
                )
            ],
        )
        for journey in (welcome, refill):
            journey_submit(actor=marketer, journey_id=journey.pk)
            journey_approve(actor=compliance, journey_id=journey.pk)
        journey_create(
            actor=marketer,
            name=DRAFT_JOURNEY,
            purpose=purposes[DIABETES],
            trigger=TriggerSpec(kind=Trigger.EVENT, event_type="program.enrolled", event_conditions={"program_code": "DPP"}),
            steps=[
                StepSpec(kind=StepKind.SEND, subject="Welcome to the program", body_text="Dear {{ first_name }},"),
                StepSpec(kind=StepKind.WAIT, wait_minutes=7 * 1440),
                StepSpec(kind=StepKind.SEND, subject="Your first week", body_text="How did your first week go?"),
            ],
        )
        # Care events from the demo EHR: CPAP deliveries for some patients with a CPAP authorization.
        cpap_patients = list(
            Authorization.objects.filter(purpose=purposes[CPAP]).order_by("patient_id").values_list("patient_id", flat=True).distinct()[:40]
        )
        now = timezone.now()
        for n, patient_id in enumerate(cpap_patients):
            patient_event_record(
                source="demo-ehr",
                source_event_id=f"delivery-{patient_id}",
                patient_id=patient_id,
                type="equipment.delivered",
                occurred_at=now - timedelta(hours=2 + n),
                attributes={"equipment_type": "CPAP"},
            )
        self._say(
            f'Journeys: "{WELCOME_JOURNEY}" and "{REFILL_JOURNEY}" (approved, live), "{DRAFT_JOURNEY}" (draft); '
            f"{len(cpap_patients)} CPAP delivery events (the worker enrols and sends; quiet hours apply)"
        )

    @staticmethod
    def _random_profile(rng: random.Random) -> dict[str, str]:
        if rng.random() < 0.12:
            return {}
        states = [VALID, NONE, EXPIRED, REVOKED, RENEWED]
        return {code: rng.choices(states, weights=[45, 33, 9, 9, 4])[0] for code in PURPOSES}

    @staticmethod
    def _form_publish(purpose, compliance):
        fields = _FORM_COMMON | FORMS[purpose.code]
        draft = form_versions.form_version_create(actor=compliance, purpose_id=purpose.pk)
        form_versions.form_version_update(actor=compliance, form_id=draft.pk, **fields)
        return form_versions.form_version_publish(actor=compliance, form_id=draft.pk)

    def _grant(self, rng, patient, purpose, signed_at, expires_at, compliance) -> None:
        written = rng.random() < 0.2  # a paper form, recorded by the compliance officer
        form = self.forms[purpose.code]
        text = form_text(form)
        authorization_grant(
            actor=compliance if written else None,
            patient=patient,
            purpose=purpose,
            signed_at=signed_at,
            expires_at=expires_at,
            channel=Authorization.Channel.WRITTEN if written else Authorization.Channel.WEB,
            form_version=form,
            document_text=text,
            text_hash=text_hash(text),
            signature_name=patient.full_name,
        )

    # --- output ------------------------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(line)

    def _print_summary(self) -> None:
        if self.verbosity < 1:
            return
        launched = Campaign.objects.filter(name=LAUNCHED_CAMPAIGN).first()
        # The one address the demo is opened at (scripts/run-demo sets SITE_URL from its port): the same in every line.
        demo_url = settings.SITE_URL.rstrip("/") + "/"
        lines = [
            "",
            f"hipaamail demo: {demo_url}",
            f"  password for every login: {DEMO_PASSWORD}",
        ]
        for member, label in ((MARKETER, "marketer"), (COMPLIANCE, "compliance officer"), (ADMIN, "administrator")):
            lines.append(f"  {label:19} {member.email:31} TOTP secret {_base32(member.totp_key_hex)}")
        lines += [
            "  second factor: `python manage.py demo_totp EMAIL` prints the current 6-digit code",
            "    (or add the TOTP secret above to an authenticator app);",
            f"    recovery codes, each usable once: {RECOVERY_CODES[0]} ... {RECOVERY_CODES[-1]}",
        ]
        if ApiKey.objects.filter(prefix=DEMO_API_PREFIX, revoked_at__isnull=True).exists():
            lines += [
                f"  integration API key (every scope): {DEMO_API_TOKEN}",
                f"    curl -H 'Authorization: Bearer {DEMO_API_TOKEN}' {demo_url}api/v1/purposes",
                f"    reference: {demo_url}api/v1/docs",
            ]
        if launched is not None:
            lines.append(f'  "{LAUNCHED_CAMPAIGN}" is {launched.get_status_display().lower()}')
        patient = Patient.objects.order_by("id").first()
        if patient is not None:
            lines += [
                f"  patient portal: {demo_url}my/sign-in/ as a demo patient, e.g. {patient.email};",
                "    the emailed code arrives in var/outbox/",
            ]
        self.stdout.write("\n".join(lines))


def _base32(key_hex: str) -> str:
    return b32encode(bytes.fromhex(key_hex)).decode()
