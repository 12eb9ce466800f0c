"""A SITE_URL on an IP address (the demo opened from another machine of the network) is a clear warning that
passkeys need a domain name (hipaamail.W001), not a failure of every command (issue 16 item 6)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hipaamail.checks import PASSKEYS_NEED_A_DOMAIN, passkeys_need_a_domain_check

ROOT = Path(__file__).resolve().parents[2]
IP_SITE_URL = "http://192.168.1.20:8000"


def _demo_manage(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """manage.py under the demo's settings (make run's), with the SITE_URL on an IP address and its own SQLite."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBAUTHN_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "hipaamail.settings.local",
        "SITE_URL": IP_SITE_URL,
        "HIPAAMAIL_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_r_sec_mfa_site_url_on_an_ip_address_warns_that_passkeys_need_a_domain_and_commands_run(tmp_path):
    """R-SEC-MFA: `check` and `migrate --plan` exit 0 and say why passkeys are not offered at that address;
    django-otp-webauthn's insecure-origin error (otp_webauthn.E031) no longer stops them; passkeys stay on
    http://localhost at the same port."""
    check = _demo_manage("check", tmp_path=tmp_path)
    plan = _demo_manage("migrate", "--plan", tmp_path=tmp_path)
    passkeys = _demo_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.OTP_WEBAUTHN_RP_ID, s.OTP_WEBAUTHN_ALLOWED_ORIGINS)",
        tmp_path=tmp_path,
    )

    for result in (check, plan):
        assert result.returncode == 0, result.stderr
        warning = f"({PASSKEYS_NEED_A_DOMAIN}) SITE_URL ({IP_SITE_URL}) is on an IP address, and passkeys need a domain"
        assert warning in result.stderr
        assert "otp_webauthn.E031" not in result.stderr
    assert "Planned operations:" in plan.stdout and "consent." in plan.stdout
    assert passkeys.returncode == 0, passkeys.stderr
    assert passkeys.stdout.strip() == "localhost ['http://localhost:8000']"


@pytest.mark.parametrize(
    ("site_url", "warned"),
    [
        ("http://192.168.1.20:8000", True),
        ("http://127.0.0.1:8000", True),
        ("https://10.0.0.5", True),
        ("http://[::1]:8000", True),
        ("http://localhost:8000", False),
        ("https://mail.riverside-health.example", False),
        ("https://192-168-1-20.riverside-health.example", False),
    ],
)
def test_r_sec_mfa_only_an_ip_address_site_url_is_warned(settings, site_url, warned):
    """R-SEC-MFA: the warning names the address and where passkeys do work; a domain or localhost is clean."""
    settings.SITE_URL = site_url
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = ["http://localhost:8000"]

    found = passkeys_need_a_domain_check(None)

    assert [problem.id for problem in found] == ([PASSKEYS_NEED_A_DOMAIN] if warned else [])
    if warned:
        assert f"SITE_URL ({site_url})" in found[0].msg and "only at http://localhost:8000" in found[0].msg
