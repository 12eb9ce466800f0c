"""Every Celery task keeps its name across code moves (issue 12, "safe to deploy over a running system"): a task
message already in a broker names its task, so a renamed task would be dropped as unknown by the new workers.
The names are given explicitly (`name=`), and this list is the contract: a new task adds its line; an existing
line never changes."""
from hipaamail.celery import app

TASK_NAMES = {
    "audit.tasks.audit_checkpoint_task",
    "audit.tasks.audit_verify_task",
    "campaigns.tasks.bounces_read_task",
    "campaigns.tasks.campaign_dispatch_task",
    "campaigns.tasks.campaign_launch_due_task",
    "campaigns.tasks.campaign_rewake_task",
    "campaigns.tasks.notice_mail_send_task",
    "campaigns.tasks.unsubscribe_bad_tokens_flush_task",
    "consent.tasks.authorization_copy_send_task",
    "consent.tasks.authorization_renewals_invite_task",
    "consent.tasks.authorization_standing_check_task",
    "consent.tasks.count_changes_prune_task",
    "consent.tasks.invitation_send_task",
    "consent.tasks.patient_import_rewake_task",
    "consent.tasks.patient_import_run_task",
    "consent.tasks.sign_in_code_send_task",
}


def test_our_celery_tasks_are_registered_under_their_frozen_names():
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if name.split(".")[0] in {"audit", "campaigns", "consent", "hipaamail"}}
    assert ours == TASK_NAMES


def test_every_scheduled_and_routed_task_exists():
    """The beat schedule and the queue routes name tasks by string: each must be a registered task."""
    from django.conf import settings

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    routed = set(settings.CELERY_TASK_ROUTES)
    assert scheduled | routed <= set(app.tasks)
