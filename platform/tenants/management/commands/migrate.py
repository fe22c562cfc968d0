"""`manage.py migrate` is migrate_schemas, as with django-tenants (which overrides it too)."""

from tenants.management.commands.migrate_schemas import Command  # noqa: F401
