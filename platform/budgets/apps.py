from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and rate limits"

    def ready(self) -> None:
        from budgets import signals  # noqa: F401 - connects the receivers
