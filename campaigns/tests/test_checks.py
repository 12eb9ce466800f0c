"""`manage.py check --deploy` warns when the DKIM signing domain does not align with the From address (DMARC,
RFC 7489 section 3.1.1), so signed mail would still fail DMARC and land in spam."""
import pytest
from django.core import checks

from campaigns.checks import dkim_domain_aligned_check


@pytest.mark.parametrize(
    ("from_email", "dkim_domain", "warned"),
    [
        ("Riverside Health <news@riverside-health.example>", "riverside-health.example", False),
        ("news@mail.riverside-health.example", "riverside-health.example", False),
        ("news@riverside-health.example", "mail.riverside-health.example", False),
        ("news@riverside-health.example", "Riverside-Health.Example.", False),
        ("Riverside Health <news@riverside-clinic.example>", "riverside-health.example", True),
        ("news@evil-riverside-health.example", "riverside-health.example", True),
        ("not an address", "riverside-health.example", True),
    ],
)
def test_dkim_domain_must_align_with_the_from_address(settings, from_email, dkim_domain, warned):
    settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = "/etc/hipaamail/dkim.pem"
    settings.HIPAAMAIL_DKIM_DOMAIN = dkim_domain
    settings.DEFAULT_FROM_EMAIL = from_email

    found = dkim_domain_aligned_check(None)

    assert [problem.id for problem in found] == (["campaigns.W001"] if warned else [])


def test_no_key_no_warning(settings):
    settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = ""
    settings.HIPAAMAIL_DKIM_DOMAIN = "riverside-health.example"
    settings.DEFAULT_FROM_EMAIL = "news@elsewhere.example"

    assert dkim_domain_aligned_check(None) == []


def test_the_check_runs_with_check_deploy(settings):
    settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = "/etc/hipaamail/dkim.pem"
    settings.HIPAAMAIL_DKIM_DOMAIN = "riverside-health.example"
    settings.DEFAULT_FROM_EMAIL = "news@elsewhere.example"

    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])

    assert "campaigns.W001" in [problem.id for problem in found]
