"""The deployment files agree with the code and with each other (ADR 0017): .env.example's required part is exactly
what production requires, with production's own command for each secret; the Procfile names every process; the
compose file runs the Procfile's commands, with PostgreSQL, Redis and a health check for each long-running service;
the Dockerfile builds on Debian's slim Python 3.11, installs requirements.txt and runs as a user of its own."""
import re
import shlex
from pathlib import Path

import yaml

from hipaamail.tests.test_production_smoke import env_example, procfile

ROOT = Path(__file__).resolve().parents[2]


def _production_constant(name: str) -> str:
    source = (ROOT / "hipaamail" / "settings" / "production.py").read_text()
    return re.search(rf"^{name} = [({{](.*?)^[)}}]", source, re.DOTALL | re.MULTILINE).group(1)


def test_env_example_requires_exactly_what_production_requires_with_production_s_recipes():
    required, optional = env_example()
    recipes = dict(re.findall(r'^\s+"([A-Z_]+)": \(?\s*(.+?),?$', _production_constant("SECRET_RECIPES"), re.MULTILINE))

    assert list(required) == re.findall(r'"([A-Z_]+)"', _production_constant("REQUIRED_ENVIRONMENT"))
    assert {name: recipe for name, recipe in required.items() if recipe} == {
        name: required[name] for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "IDENTIFIER_HASH_KEY", "AUDIT_CHECKPOINT_KEYS")
    }  # fmt: skip
    assert set(recipes) == {name for name, recipe in required.items() if recipe}
    assert required["SECRET_KEY"] == 'python3 -c "import secrets; print(secrets.token_urlsafe(50))"'
    assert "EMAIL_CA_FILE" in (ROOT / ".env.example").read_text()
    assert not set(optional) & set(required)


def test_the_procfile_names_the_web_process_a_worker_per_queue_beat_and_the_release_step():
    processes = procfile()

    assert processes == {
        "release": "python manage.py migrate --noinput",
        "web": "gunicorn hipaamail.wsgi:application",
        "campaigns": "celery -A hipaamail worker -l info -Q campaigns -n campaigns@%h --concurrency 2",
        "transactional": "celery -A hipaamail worker -l info -Q transactional -n transactional@%h --concurrency 2",
        "beat": "celery -A hipaamail beat -l info",
    }


def test_compose_runs_the_procfile_s_commands_with_postgresql_redis_and_health_checks():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    processes = procfile()

    assert set(services) == {"db", "redis", "migrate", "web", "campaigns", "transactional", "beat"}
    for name in ("web", "campaigns", "transactional", "beat"):
        assert services[name]["command"] == shlex.split(processes[name]), name
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == shlex.split(processes["release"])
    assert all("healthcheck" in services[name] for name in ("db", "redis", "web", "campaigns", "transactional", "beat"))
    assert services["db"]["image"].startswith("postgres:15")
    assert "/health/live" in services["web"]["healthcheck"]["test"][1]


def test_the_dockerfile_builds_on_python_3_11_slim_bookworm_installs_requirements_and_runs_unprivileged():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert dockerfile.startswith("# ") and "\nFROM python:3.11-slim-bookworm\n" in dockerfile
    assert "pip install --no-deps --require-hashes -r requirements.txt && pip check" in dockerfile  # exactly the lock
    assert "libpango-1.0-0" in dockerfile and "libpangoft2-1.0-0" in dockerfile  # WeasyPrint
    assert "manage.py collectstatic --noinput" in dockerfile
    assert re.search(r"^USER hipaamail$", dockerfile, re.MULTILINE)
    assert dockerfile.index("collectstatic") < dockerfile.index("USER hipaamail")
    assert "DJANGO_SETTINGS_MODULE=hipaamail.settings.production" in dockerfile
