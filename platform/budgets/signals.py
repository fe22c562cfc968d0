"""A budget deleted along with its credential (a cascade, which bypasses budget_delete)
must leave the enforcement index too."""

import logging

from django.db import connection
from django.db.models.signals import post_delete
from django.dispatch import receiver

from budgets.errors import BudgetsUnavailable
from budgets.models import Budget

logger = logging.getLogger(__name__)


@receiver(post_delete, sender=Budget, dispatch_uid="budgets.index_on_delete")
def _budget_deleted(sender, instance, **kwargs):
    from budgets.services import budget_index_changed

    try:
        budget_index_changed(schema=connection.schema_name)
    except BudgetsUnavailable:
        # Deleting the credential must not fail for this: its stale index entry names a
        # credential no run can use any more, and the index expires within the hour.
        logger.warning("Budget %s deleted while Redis was unreachable; index not refreshed", instance.pk)
