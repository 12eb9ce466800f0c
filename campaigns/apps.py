from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self):
        from audit.verification import verifier_register
        from campaigns import checks  # noqa: F401 - registers the deployment checks
        from campaigns.delivery_verification import deliveries_check
        from campaigns.selectors.campaigns import delivery_queued_counts
        from observability.metrics import queue_depth_source_register

        # Every audit verify (manage.py audit_verify, the nightly task) also compares each delivery row with the
        # sealed batch event that recorded it (issue 11, item 5): the audit app cannot import campaigns.
        verifier_register("deliveries", deliveries_check)
        # The metrics' queue depth in the database, read at each scrape (observability cannot import campaigns).
        queue_depth_source_register("deliveries_queued", delivery_queued_counts)
