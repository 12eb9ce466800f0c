"""The production smoke test (`make test-production`, marker `production`; ADR 0017): docs/deployment.md's native
steps on this machine, as an operator follows them, with real secrets made for the run by .env.example's own
commands. No container engine runs here, so the same processes run natively, from the Procfile:

1. the environment: every variable .env.example requires, its secrets made with the commands written there;
   a fresh PostgreSQL database and fresh Redis databases; mail to a local SMTP server that offers only STARTTLS,
   with a certificate from a CA made for this run, which the product trusts through EMAIL_CA_FILE and verifies;
2. the Procfile's release step (migrate), then collectstatic and `check --deploy` (no warning);
3. the Procfile's processes: gunicorn (serving HTTPS itself, with a certificate from the same CA), the campaigns
   worker, the transactional worker and beat, as real processes;
4. the health endpoints answer 200 (the readiness check sees both workers);
5. staff created with `createsuperuser` and the services, each with a second factor; a patient invited by email
   signs the form through the patient pages in Chromium (the invitation and the sign-in code are mailed by the
   transactional worker, over TLS); a campaign is written, approved by someone else, launched, and the campaigns
   worker sends it: the SMTP server receives every message over TLS;
6. Chromium signs a marketer in and opens the pages whose scripts matter (the campaign progress, the segment
   builder, passkeys): no Content-Security-Policy violation, no failed request, every static file served by
   whitenoise under its hashed name.

Screenshots go to $SCREENSHOT_DIR when set (docs/screenshots/production-campaign-progress.png and
production-patient-sign.png were made so: pages served by gunicorn and whitenoise under the production settings).
"""
import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from campaigns.tests.tls_relay import pki_make, tls_relay
from conftest import CHROMIUM, CHROMIUM_ARGS, csp_violations_collect, csp_violations_watch, screenshot

pytestmark = pytest.mark.production

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "clinic.localhost"  # RFC 6761: resolves to loopback; Chromium does so itself, the test connects to 127.0.0.1
ADMINISTRATOR = "admin@riverside-health.org"
CAMPAIGN = "Spring CPAP supplies"
SUBJECT = "Time to refresh your CPAP supplies"
PATIENTS = ("ana.lopez@example.org", "ben.okafor@example.org", "chen.wei@example.org", "dana.reyes@example.org")
STARTUP_TIMEOUT = 60


# --- what the docs say: .env.example and the Procfile ----------------------------------------------------------


def env_example() -> tuple[dict[str, str | None], list[str]]:
    """.env.example's required variables (name -> the command that makes it, or None) and its optional names."""
    required: dict[str, str | None] = {}
    optional: list[str] = []
    section = None
    recipe = None
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("# ---- Required"):
            section = required
        elif line.startswith("# ---- Optional"):
            section = optional
        elif re.match(r"#\s+python3 -c ", line):
            recipe = line.lstrip("#").strip()
        elif match := re.match(r"([A-Z][A-Z0-9_]*)=", line):
            if section is required:
                required[match.group(1)] = recipe
            elif section is optional:
                optional.append(match.group(1))
            recipe = None
        elif not line.startswith("#"):
            recipe = None
    return required, optional


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9_-]+):\s*(.+)$", line):
            processes[match.group(1)] = match.group(2)
    return processes


# --- the SMTP server's and gunicorn's certificates come from campaigns.tests.tls_relay; HTTPS to gunicorn -------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _text_of(message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return ""


class Https(http.client.HTTPSConnection):
    """HTTPS to gunicorn on 127.0.0.1, verified against the run's CA for the name clinic.localhost (SNI too)."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


# --- the installation -------------------------------------------------------------------------------------------


class Installation:
    def __init__(self, folder: Path, pki: dict, smtp_port: int, web_port: int):
        self.folder = folder
        self.pki = pki
        self.web_port = web_port
        self.processes: dict[str, subprocess.Popen] = {}
        self.origin = f"https://{HOST}:{web_port}"
        base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hipaamail"))
        self.database = f"{base.path.lstrip('/') or 'hipaamail'}_production_smoke"
        self.server_url = base._replace(path="/postgres").geturl()
        broker = urlsplit(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"))
        broker_db = int(broker.path.lstrip("/") or 0)
        cache_db = broker_db - 1 if broker_db else broker_db + 1
        self.redis = [broker._replace(path=f"/{n}").geturl() for n in (broker_db, cache_db)]
        required, _ = env_example()
        secrets_made = {name: self._make(recipe) for name, recipe in required.items() if recipe}
        self.env = {
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            # No DJANGO_SETTINGS_MODULE: the entry points default to production (ADR 0017).
            **secrets_made,
            "ALLOWED_HOSTS": HOST,
            "SITE_URL": self.origin,
            "WEBAUTHN_ALLOWED_ORIGINS": self.origin,
            "DATABASE_URL": base._replace(path=f"/{self.database}").geturl(),
            "CELERY_BROKER_URL": self.redis[0],
            "CACHE_URL": self.redis[1],
            "DEFAULT_FROM_EMAIL": "Riverside Health <news@riverside-health.org>",
            "EMAIL_HOST": "localhost",
            "EMAIL_PORT": str(smtp_port),
            "EMAIL_CA_FILE": str(pki["ca"]),
            "HIPAAMAIL_VAR_DIR": str(folder / "var"),
            "PORT": str(web_port),
            "WEB_CONCURRENCY": "2",
            # gunicorn serves HTTPS itself with a certificate of the run's CA (no proxy in front: ADR 0017).
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{web_port} --certfile {pki['cert']} --keyfile {pki['key']}",
        }
        self.missing = sorted(set(required) - set(self.env))

    @staticmethod
    def _make(recipe: str) -> str:
        command = shlex.split(recipe)
        assert command[0] == "python3"
        return subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, check=True).stdout.strip()

    def fresh_services(self) -> None:
        import psycopg
        import redis

        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{self.database}"')
        for url in self.redis:
            redis.Redis.from_url(url).flushdb()

    def drop_services(self) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def run(self, command: str | list[str], *, env: dict | None = None, timeout: int = 180):
        args = shlex.split(command) if isinstance(command, str) else command
        return subprocess.run(args, cwd=ROOT, env=self.env | (env or {}), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def start(self, name: str, command: str) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(shlex.split(command), cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def stop(self, name: str) -> None:
        """SIGTERM, as systemd stops a unit: a worker finishes what it holds (warm shutdown) and exits."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def https(self, method: str, path: str, *, body=None, headers=None) -> tuple[int, dict, bytes]:
        context = ssl.create_default_context(cafile=str(self.pki["ca"]))
        connection = Https(HOST, self.web_port, context=context, timeout=15)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def shell(self, code: str) -> dict:
        result = self.run([sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", code])
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


def _wait(what: str, condition, installation: Installation, *, timeout: float = STARTUP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in installation.processes.items():
            assert process.poll() is None, f"{name} exited: {installation.log(name)}"
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    logs = "\n".join(f"--- {name}\n{installation.log(name)}" for name in installation.processes)
    raise AssertionError(f"{what}: not within {timeout:g} s\n{logs}")


@pytest.fixture
def installation(tmp_path):
    pki = pki_make(tmp_path, host=HOST)
    with tls_relay(pki) as (handler, smtp_port):
        installed = Installation(tmp_path, pki, smtp_port, _free_port())
        installed.smtp = handler
        installed.fresh_services()
        try:
            yield installed
        finally:
            installed.stop_all()
            installed.drop_services()


# --- the test ---------------------------------------------------------------------------------------------------


def test_production_install_serves_https_sends_a_campaign_over_verified_tls_and_a_patient_signs(installation):
    """R-SEC-TLS (mail over verified STARTTLS, web over HTTPS with HSTS), R-SEND-COVERED, R-AUTH-ESIGN, end to end
    on the production settings, following docs/deployment.md's native steps."""
    started = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - started, 1)
        print(f"production smoke test: {name} at {phases[name]} s", file=sys.stderr)

    smtp = installation.smtp
    processes = procfile()
    assert installation.missing == [], f".env.example names variables the run does not set: {installation.missing}"

    # 2. The release step (migrate) with collectstatic beside it (they touch different things), then check --deploy.
    collect = subprocess.Popen([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                               env=installation.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    migrated = installation.run(processes["release"])
    _, collected_err = collect.communicate(timeout=240)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert collect.returncode == 0, collected_err[-3000:]
    checked = installation.run("python manage.py check --deploy --fail-level WARNING")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "System check identified no issues (0 silenced)."
    assert (installation.folder / "var" / "static" / "staticfiles.json").exists()
    phase("migrate, collectstatic, check --deploy")

    # 3. Every process of the Procfile, as it is written there.
    for name in ("web", "campaigns", "transactional", "beat"):
        installation.start(name, processes[name])

    # 4. Health: liveness as soon as gunicorn answers, readiness once both workers do.
    _wait("liveness", lambda: installation.https("GET", "/health/live")[0] == 200, installation)
    status, headers, body = _wait(
        "readiness", lambda: (answer := installation.https("GET", "/health/ready"))[0] == 200 and answer, installation
    )
    assert json.loads(body) == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "broker": "ok",
                                                           "workers:campaigns": "ok", "workers:transactional": "ok"}}  # fmt: skip
    phase("processes started, healthy")
    status, headers, _ = installation.https("GET", "/")
    assert status == 302 and headers["Location"].startswith("/accounts/login/")
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"

    # 5. Staff: the first administrator with Django's createsuperuser, the others and every second factor through
    # the services; a purpose, its form, three patients who signed on paper, an invitation for a fourth.
    password = installation._make('python3 -c "import secrets; print(secrets.token_urlsafe(18))"')
    created = installation.run(
        f"python manage.py createsuperuser --noinput --username admin --email {ADMINISTRATOR}",
        env={"DJANGO_SUPERUSER_PASSWORD": password},
    )
    assert created.returncode == 0, created.stderr
    steps = "from hipaamail.tests import production_smoke_steps as steps; "
    setup = installation.shell(steps + f"steps.setup(administrator={ADMINISTRATOR!r}, password={password!r})")

    invitation = _wait("the invitation email", lambda: [m for m in smtp.received() if m["to"] == [PATIENTS[3]]],
                       installation)[0]  # fmt: skip
    link = re.search(r"https://\S+/my/invite/\S+/", _text_of(invitation["message"])).group(0)
    assert link.startswith(installation.origin + "/my/invite/")

    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    failures: list[str] = []
    static_loaded: list[str] = []
    progress_polls: list[int] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
                  # Trust exactly this run's server certificate (its public key), nothing else.
                  f"--ignore-certificate-errors-spki-list={installation.pki['spki']}"],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        violations = csp_violations_watch(context)

        def response(answer):
            if answer.status >= 400:
                failures.append(f"{answer.status} {answer.url}")
            elif "/static/" in answer.url:
                static_loaded.append(answer.url)
            elif answer.url.endswith("/progress/"):
                progress_polls.append(answer.status)

        context.on("response", response)
        # ERR_ABORTED is the browser dropping a request in flight because the test navigated on (the progress
        # script's poll, say): not a failure of the server.
        context.on("requestfailed", lambda request: "ERR_ABORTED" not in (request.failure or "")
                   and failures.append(f"failed {request.url} {request.failure}"))  # fmt: skip
        context.on("console", lambda message: message.type == "error" and failures.append(f"console: {message.text}"))
        page = context.new_page()

        # The patient: the emailed link, the emailed code, the form, the signature.
        page.goto(link)
        assert page.locator("h1").inner_text() == "Check your email"
        code_mail = _wait("the sign-in code", lambda: [m for m in smtp.received()
                                                       if m["to"] == [PATIENTS[3]] and "Your code is" in _text_of(m["message"])],
                          installation)[-1]  # fmt: skip
        page.get_by_label("The 6-digit code from the email").fill(
            re.search(r"Your code is: (\d{6})", _text_of(code_mail["message"])).group(1)
        )
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(f"**/my/sign/{setup['purpose_id']}/")
        page.get_by_label("Type your full name to sign").fill("Dana Reyes")
        page.get_by_label("I am signing this form electronically.").check()
        screenshot(page, "production-patient-sign")
        page.get_by_role("button", name="Sign the form").click()
        page.wait_for_url("**/my/signed/*/")
        assert page.locator("h1").inner_text() == "Thank you. You signed the form."
        phase("patient signed")

        # The campaign: written, approved by another person, launched; the campaigns worker sends it.
        campaign = installation.shell(steps + f"steps.campaign_send(name={CAMPAIGN!r}, subject={SUBJECT!r})")
        sent = _wait("the campaign's messages", lambda: (
            marketing := [m for m in smtp.received() if m["message"]["Subject"] == SUBJECT]
        ) and len(marketing) >= len(PATIENTS) and marketing, installation)  # fmt: skip
        final = _wait("the campaign's end", lambda: (s := installation.shell(
            steps + f"steps.campaign_status(campaign_id={campaign['campaign_id']})"))["status"] == "sent" and s,
            installation)  # fmt: skip
        phase("campaign received")

        # A second campaign launched while the campaigns worker is stopped: it stays "sending", so its page runs
        # the progress script (the page loads it only while a campaign sends or is paused).
        installation.stop("campaigns")
        watched = installation.shell(steps + "steps.campaign_send(name='Summer CPAP check', subject='Summer CPAP check')")

        # The staff pages whose scripts matter, signed in as the marketer with password and authenticator code.
        from django_otp.oath import totp

        page.goto(installation.origin + "/")
        page.fill("input[name=login]", setup["marketer"])
        page.fill("input[name=password]", password)
        page.click("main button[type=submit]")
        page.wait_for_url("**/account/two-factor/**")
        key = bytes.fromhex(setup["totp_keys"][setup["marketer"]])
        while int(time.time() // 30) <= setup["totp_step"]:  # the enrolment used this step's code: the next one
            time.sleep(0.5)
        page.fill("input[name=token]", f"{totp(key):06d}")
        page.click("main button[type=submit]")
        page.wait_for_url(installation.origin + "/")
        for path, name in ((f"/campaigns/{watched['campaign_id']}/", "production-campaign-progress"),
                           ("/campaigns/new/", "production-campaign-editor"),
                           ("/campaigns/segments/new/", "production-segment-builder"),
                           ("/account/two-factor/devices/", "production-passkeys")):  # fmt: skip
            page.goto(installation.origin + path)
            page.wait_for_load_state("networkidle")
            screenshot(page, name)
        csp_violations_collect(context, violations)
        browser.close()

    # Every message over TLS (the server refuses MAIL before STARTTLS), each patient exactly one campaign message.
    assert all(message["tls"] for message in smtp.received())
    assert sorted(recipient for message in sent for recipient in message["to"]) == sorted(PATIENTS)
    assert all(message["message"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for message in sent)
    assert final["outcomes"] == {"sent": len(PATIENTS)}
    # The static files: loaded under their hashed names (the manifest), none failed, no CSP violation.
    assert violations == []
    assert failures == []
    scripts = {urlsplit(url).path for url in static_loaded if url.endswith(".js")}
    assert {re.sub(r"\.[0-9a-f]{12}\.js$", ".js", path) for path in scripts} >= {
        "/static/js/campaign-progress.js", "/static/js/campaign-editor.js", "/static/js/segment-builder.js",
        "/static/js/passkeys.js",
    }  # fmt: skip
    assert all(re.search(r"\.[0-9a-f]{12}\.js$", path) for path in scripts)
    assert progress_polls and set(progress_polls) == {200}  # the progress script ran and asked the server
    phase("done")
    # About two minutes on a quiet 2-core machine (README); printed rather than asserted: CI machines are shared.
    print("production smoke test phases (s):", json.dumps(phases))
