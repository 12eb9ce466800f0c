"""Every operation of the API names exactly one scope, and a key without it is refused with 403 before anything
runs; a key with only that scope passes the check. Enumerated from the API itself, so a new operation cannot escape
(deny by default: an operation without a KeyAuth fails the first test)."""
import re

import pytest

from api.auth import KeyAuth
from api.main import api
from api.scopes import SCOPES

pytestmark = pytest.mark.django_db


def _operations():
    for prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            for operation in path_view.operations:
                url = "/api/v1" + (prefix.rstrip("/") + "/" + path.lstrip("/")).rstrip("/").replace("//", "/")
                for method in operation.methods:
                    yield method, url, operation


OPERATIONS = list(_operations())


def _concrete(url: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", url)


def test_the_api_has_operations_and_each_names_exactly_one_scope():
    assert len(OPERATIONS) >= 4
    for method, url, operation in OPERATIONS:
        auths = operation.auth_callbacks
        assert len(auths) == 1 and isinstance(auths[0], KeyAuth), f"{method} {url} has no single KeyAuth"
        assert auths[0].scope in SCOPES


@pytest.mark.parametrize(("method", "url", "operation"), OPERATIONS, ids=[f"{m} {u}" for m, u, _ in OPERATIONS])
def test_a_key_without_the_operations_scope_is_refused(api_client, method, url, operation):
    scope = operation.auth_callbacks[0].scope
    api = api_client([other for other in SCOPES if other != scope])
    response = api.post(_concrete(url), {}) if method == "POST" else api.get(_concrete(url))
    assert response.status_code == 403, (method, url, response.status_code)
    assert response.json()["code"] == "scope_missing"


@pytest.mark.parametrize(("method", "url", "operation"), OPERATIONS, ids=[f"{m} {u}" for m, u, _ in OPERATIONS])
def test_a_key_with_only_the_operations_scope_passes_the_scope_check(api_client, method, url, operation):
    api = api_client([operation.auth_callbacks[0].scope])
    response = api.post(_concrete(url), {}) if method == "POST" else api.get(_concrete(url))
    assert response.status_code not in (401, 403), (method, url, response.status_code)
