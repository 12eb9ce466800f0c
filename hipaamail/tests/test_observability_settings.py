"""The production settings' observability block (ADR 0018): JSON logs by default, Sentry on with a DSN and refused
in words with a bad one, METRICS_TOKEN long enough, PROMETHEUS_MULTIPROC_DIR a folder."""
import json

from hipaamail.tests.test_settings import PRODUCTION_ENV, _manage

SHOW = (
    "import logging; from django.conf import settings; "
    "print(settings.LOG_FORMAT, settings.SENTRY_ENABLED); logging.getLogger('hipaamail.check').warning('a line')"
)


def test_production_logs_json_lines_and_reports_errors_once_a_dsn_is_set():
    plain = _manage("shell", "-c", SHOW, env=PRODUCTION_ENV)
    reporting = _manage("shell", "-c", SHOW, env=PRODUCTION_ENV | {"SENTRY_DSN": "https://key@errors.example.org/7"})

    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[-1].split() == ["json", "False"]
    (line,) = [json.loads(text) for text in plain.stderr.splitlines() if text.startswith("{")]
    assert (line["logger"], line["message"], line["request_id"], line["task_id"]) == ("hipaamail.check", "a line", "", "")
    assert reporting.returncode == 0, reporting.stderr
    assert reporting.stdout.splitlines()[-1].split() == ["json", "True"]


def test_production_can_log_plain_lines_and_refuses_another_format_in_words():
    plain = _manage("shell", "-c", SHOW, env=PRODUCTION_ENV | {"LOG_FORMAT": "plain"})
    refused = _manage("check", env=PRODUCTION_ENV | {"LOG_FORMAT": "yaml"})

    assert plain.stdout.splitlines()[-1].split() == ["plain", "False"]
    assert refused.returncode != 0
    assert "LOG_FORMAT must be one of json, plain (it is 'yaml')" in refused.stderr


def test_production_refuses_a_malformed_dsn_a_short_metrics_token_and_a_missing_multiprocess_folder(tmp_path):
    dsn = _manage("check", env=PRODUCTION_ENV | {"SENTRY_DSN": "errors.example.org/7"})
    token = _manage("check", env=PRODUCTION_ENV | {"METRICS_TOKEN": "short"})
    folder = _manage("check", env=PRODUCTION_ENV | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")})

    assert dsn.returncode != 0 and "SENTRY_DSN is not a Sentry DSN" in dsn.stderr
    assert token.returncode != 0 and "METRICS_TOKEN needs at least 32 characters" in token.stderr
    assert folder.returncode != 0 and "PROMETHEUS_MULTIPROC_DIR is" in folder.stderr and "not a folder" in folder.stderr


def test_production_check_deploy_is_clean_with_metrics_and_error_reports_on(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV | {
        "SENTRY_DSN": "https://key@errors.example.org/7",
        "METRICS_TOKEN": "m" * 40,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    })

    assert result.returncode == 0, result.stderr
