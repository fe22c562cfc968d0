"""A budget deleted along with its credential (a cascade, which bypasses budget_delete)
must leave the enforcement index too."""

from django.db import connection
from django.db.models.signals import post_delete
from django.dispatch import receiver

from budgets.models import Budget


@receiver(post_delete, sender=Budget, dispatch_uid="budgets.index_on_delete")
def _budget_deleted(sender, instance, **kwargs):
    from budgets.services import budget_index_changed

    budget_index_changed(schema=connection.schema_name)
