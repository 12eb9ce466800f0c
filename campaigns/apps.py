from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self):
        from audit.verification import verifier_register
        from campaigns import checks  # noqa: F401 - registers the deployment checks
        from campaigns.delivery_verification import deliveries_check

        # Every audit verify (manage.py audit_verify, the nightly task) also compares each delivery row with the
        # sealed batch event that recorded it (issue 11, item 5): the audit app cannot import campaigns.
        verifier_register("deliveries", deliveries_check)
