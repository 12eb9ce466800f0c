"""Thin Celery tasks: they wake the sender; the database holds the truth. Each is safe to run twice."""
from celery import shared_task

from campaigns.notices import notice_mail_send
from campaigns.sending.dispatch import TransientSendError, campaign_finish_if_done, delivery_dispatch_batch


@shared_task(
    name="campaigns.tasks.campaign_dispatch_task",
    autoretry_for=(TransientSendError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=None,
)
def campaign_dispatch_task(campaign_id: int) -> None:
    while True:
        try:
            if not delivery_dispatch_batch(campaign_id=campaign_id):
                break
        except TransientSendError as error:
            # A server that took part of the batch is up: it ended the session (421 after N messages, as Amazon
            # SES does) or deferred one message (451). Back off only when a batch made no progress; backing off
            # after each session would grow the retry's countdown with every N messages (found by
            # campaigns/tests/test_smtp_faults.py: 40 messages in sessions of 4 took minutes). Each pass here
            # ended at least one delivery, so this loop ends.
            if not error.progressed:
                raise
    campaign_finish_if_done(campaign_id=campaign_id)


@shared_task(name="campaigns.tasks.notice_mail_send_task")
def notice_mail_send_task(notice_ids: list[int]) -> None:
    """The review notices' mail (campaigns.notices), on the "transactional" queue: a reviewer's click never waits for
    the mail server, and a campaign being sent never holds a notice up."""
    notice_mail_send(notice_ids=notice_ids)
