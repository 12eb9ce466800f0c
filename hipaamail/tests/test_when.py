from datetime import UTC, datetime

from django.template import Context, Template
from django.test import override_settings


def _render(source: str, **context) -> str:
    return Template("{% load when %}" + source).render(Context(context))


@override_settings(TIME_ZONE="America/Chicago")
def test_an_instant_reads_in_the_organisations_zone_with_the_zone_named():
    instant = datetime(2026, 12, 7, 14, 5, 9, tzinfo=UTC)
    assert _render("{{ t|when }}", t=instant) == "Dec 7, 2026, 8:05 AM CST"
    assert _render("{{ t|when:'seconds' }}", t=instant) == "Dec 7, 2026, 8:05:09 AM CST"
    assert _render("{{ t|when:'date' }}", t=instant) == "Dec 7, 2026"
    assert _render("{% org_zone %}") == "Central Time (America/Chicago)"


@override_settings(TIME_ZONE="America/New_York")
def test_summer_time_is_named_as_such():
    assert _render("{{ t|when }}", t=datetime(2026, 7, 1, 16, 0, tzinfo=UTC)) == "Jul 1, 2026, 12:00 PM EDT"


def test_a_missing_or_naive_value_gives_nothing_rather_than_a_guess():
    assert _render("{{ t|when }}", t=None) == ""
    assert _render("{{ t|when }}", t=datetime(2026, 12, 7, 14, 5)) == ""


@override_settings(TIME_ZONE="America/Chicago")
def test_in_spanish_the_day_comes_first_and_months_are_lower_case():
    from django.utils import translation

    instant = datetime(2026, 12, 7, 14, 5, 9, tzinfo=UTC)
    with translation.override("es"):
        assert _render("{{ t|when:'date' }}", t=instant) == "7 de diciembre de 2026"
        assert _render("{{ t|when }}", t=instant).startswith("7 dic 2026, 8:05 ")


@override_settings(TIME_ZONE="America/Chicago")
def test_the_zone_is_named_in_the_readers_language():
    from django.utils import translation

    with translation.override("es"):
        assert _render("{% org_zone %}") == "hora del Centro (America/Chicago)"


@override_settings(TIME_ZONE="America/Chicago")
def test_the_audit_log_writes_instants_as_the_when_filter_does_in_every_language():
    """audit.presentation cannot load the filter (the audit app is below hipaamail); its formats must agree."""
    from types import SimpleNamespace

    from django.conf import settings
    from django.utils import translation

    from audit.presentation import _when

    event = SimpleNamespace(occurred_at=datetime(2026, 12, 7, 14, 5, 9, tzinfo=UTC))
    for language, _name in settings.LANGUAGES:
        with translation.override(language):
            assert _when(event) == _render("{{ t|when:'seconds' }}", t=event.occurred_at)
