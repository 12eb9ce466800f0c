# The purposes a content block may be used with (issue 17, item 1): none listed means every purpose.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("campaigns", "0008_fewer_indexes_and_claim"),
        ("consent", "0011_count_changes"),
    ]

    operations = [
        migrations.AddField(
            model_name="contentblock",
            name="purposes",
            field=models.ManyToManyField(blank=True, related_name="+", to="consent.purpose"),
        ),
    ]
