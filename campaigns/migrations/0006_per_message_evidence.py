"""Per-message evidence (ADR 0010): when each delivery's coverage was checked, and a failed delivery's SMTP code.

Deliveries sent before this migration were checked once per batch at the batch's commit time, which was also
recorded as their sent_at: that instant is the best evidence they have of both, so it is copied to checked_at
before the constraint starts to require one on every sent row."""
from django.db import migrations, models


def backfill_checked_at(apps, schema_editor):
    Delivery = apps.get_model("campaigns", "Delivery")
    Delivery.objects.filter(status="sent", checked_at__isnull=True).update(checked_at=models.F("sent_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0005_campaign_content'),
        ('consent', '0006_program_enrolment'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='delivery',
            name='delivery_sent_has_authorization',
        ),
        migrations.AddField(
            model_name='delivery',
            name='checked_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='delivery',
            name='smtp_code',
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(backfill_checked_at, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'sent'), _negated=True), models.Q(('authorization__isnull', False), ('checked_at__isnull', False), ('sent_at__isnull', False)), _connector='OR'), name='delivery_sent_has_authorization'),
        ),
    ]
