"""Account changes made in the Django admin are on the hash-chained audit trail, not only in django_admin_log
(R-SEC-AUDIT, R-SEC-UNIQUE-ID): roles are groups, so a change there changes who may see patient data."""
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(verified_client):
    superuser = staff_make(role="administrator")
    superuser.is_superuser = True
    superuser.save(update_fields=["is_superuser"])
    verified_client.sign_in(user=superuser)
    verified_client.superuser = superuser
    return verified_client


def _user_form(user, **changes) -> dict:
    data = {
        "username": user.username, "first_name": user.first_name, "last_name": user.last_name,
        "email": user.email, "is_active": "on", "is_staff": "on" if user.is_staff else "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "last_login_0": "", "last_login_1": "",
        "date_joined_0": f"{timezone.localtime(user.date_joined):%Y-%m-%d}",
        "date_joined_1": f"{timezone.localtime(user.date_joined):%H:%M:%S}",
    }  # fmt: skip
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_r_sec_audit_a_role_given_in_the_admin_is_audited_with_field_names_only(admin_client):
    """R-SEC-AUDIT: an administrator makes a marketer a compliance officer in the admin; the change is audited
    (who, which account, which fields), with no value in the details."""
    marketer = staff_make(role="marketer")
    officers = Group.objects.get_or_create(name="compliance officer")[0]

    response = admin_client.post(
        f"/admin/auth/user/{marketer.pk}/change/", _user_form(marketer, groups=[str(officers.pk)])
    )

    assert response.status_code == 302, response.content[:2000]
    assert list(marketer.groups.values_list("name", flat=True)) == ["compliance officer"]
    event = AuditEvent.objects.get(action="account.admin_changed")
    assert (event.actor_id, event.object_type, event.object_id) == (admin_client.superuser.pk, "auth.user", str(marketer.pk))
    assert "groups" in event.details["fields"]  # field names as codes (the form may also re-save date_joined)
    assert set(event.details) == {"fields"}
    assert marketer.email not in str(event.details)


def test_r_sec_audit_groups_added_and_accounts_deleted_in_the_admin_are_audited(admin_client):
    """R-SEC-AUDIT: adding a group and deleting a staff account in the admin each leave an audit event."""
    leaver = staff_make(role="marketer")

    assert admin_client.post("/admin/auth/group/add/", {"name": "auditors"}).status_code == 302
    response = admin_client.post(f"/admin/auth/user/{leaver.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    added = AuditEvent.objects.get(action="account.admin_added")
    assert (added.object_type, added.object_id) == ("auth.group", str(Group.objects.get(name="auditors").pk))
    deleted = AuditEvent.objects.get(action="account.admin_deleted")
    assert (deleted.object_type, deleted.object_id, deleted.details) == ("auth.user", str(leaver.pk), {})
