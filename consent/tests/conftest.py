import pytest
from django.core.cache import cache


@pytest.fixture
def fresh_throttle_and_media(settings, tmp_path):
    """An empty cache (the sign-in code throttles live there) and a per-test MEDIA_ROOT, so signed copies written by
    tests stay out of var/. The patient-facing suites (portal, signing) use it for every test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    yield
    cache.clear()
