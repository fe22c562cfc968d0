"""django-tenants' migrate_schemas, skipping the schemas that have nothing to migrate.

django-tenants runs Django's `migrate` in every schema, even when nothing is pending: system
checks, a migration plan, post_migrate signals and a new connection, per schema. With
thousands of tenants a deploy (and every `dev.py run`) spent minutes doing nothing. This
command first reads, in a few statements for all schemas, which ones already record every
migration the code has, and hands only the others to django-tenants' executor. A schema
missing any migration, or without a django_migrations table, is migrated as before.

Skipped schemas get no pre_migrate/post_migrate signals: those create the content types and
permissions of new models, which the migration that adds a model brings with it.

With `--executor multiprocessing` the connection pool is closed before django-tenants forks
its workers, which otherwise hang (see close_pool_before_fork).
"""

from __future__ import annotations

from django.db import connections
from django_tenants.management.commands import SyncCommon
from django_tenants.management.commands.migrate_schemas import (
    GET_EXECUTOR_FUNCTION,
    MigrateSchemasCommand,
)
from django_tenants.migration_executors import MultiprocessingExecutor
from django_tenants.utils import (
    get_public_schema_name,
    get_tenant_migration_order,
    get_tenant_model,
    has_multi_type_tenants,
    schema_exists,
)

from tenants.migration_state import migrations_wanted, schemas_up_to_date

# With these, migrate does more than apply what is missing (or only reports): every schema
# is migrated, as django-tenants' own command does.
EVERY_SCHEMA_OPTIONS = ("every_schema", "app_label", "migration_name", "plan", "prune", "run_syncdb")
NAMES_SHOWN = 10


class Command(MigrateSchemasCommand):
    help = (
        MigrateSchemasCommand.help
        + " Schemas that already record every migration are skipped."
    )
    # Checked once in handle(), not again by `migrate` in every schema.
    requires_system_checks = []

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        parser.add_argument(
            "--every-schema", action="store_true",
            help="Run migrate in every schema, even those up to date (as django-tenants does), "
                 "e.g. to have post_migrate re-create deleted content types or permissions.",
        )

    def handle(self, *args, **options):
        if not options.get("skip_checks"):
            self.check(databases=[options["database"]])
        options["skip_checks"] = True
        if has_multi_type_tenants():
            return super().handle(*args, **options)

        SyncCommon.handle(self, *args, **options)
        public = get_public_schema_name()
        database = self.options["database"]
        self.skipping = not any(self.options.get(name) for name in EVERY_SCHEMA_OPTIONS)
        self.wanted = migrations_wanted() if self.skipping else frozenset()
        self.checked = self.skipped = 0
        executor = GET_EXECUTOR_FUNCTION(codename=self.executor)(self.args, self.options)

        # Public first, as django-tenants does: the list of tenants lives there.
        if self.sync_public and self.behind([public], database=database):
            executor.run_migrations(tenants=[public])
        if self.sync_tenant:
            if self.schema_name and self.schema_name != public:
                if not schema_exists(self.schema_name, database):
                    raise RuntimeError(f'Schema "{self.schema_name}" does not exist')
                tenant_schemas = [self.schema_name]
            else:
                tenant_schemas = self.tenant_schema_names(public)
            pending = self.behind(tenant_schemas, database=database)
            if pending:
                if isinstance(executor, MultiprocessingExecutor):
                    close_pool_before_fork(connections[database])
                executor.run_migrations(tenants=pending)
        if self.skipping and int(self.options["verbosity"]) >= 1:
            self.stdout.write(
                f"{self.skipped} of {self.checked} schema(s) up to date: skipped.",
                self.style.SUCCESS,
            )

    def behind(self, schemas: list[str], *, database: str) -> list[str]:
        """The schemas among `schemas` that miss a migration, announced as they are migrated."""
        if not self.skipping:
            return schemas
        up_to_date = schemas_up_to_date(
            schema_names=schemas, wanted=self.wanted, connection=connections[database]
        )
        pending = [schema for schema in schemas if schema not in up_to_date]
        self.checked += len(schemas)
        self.skipped += len(schemas) - len(pending)
        if pending and int(self.options["verbosity"]) >= 1:
            shown = ", ".join(pending[:NAMES_SHOWN])
            more = f" and {len(pending) - NAMES_SHOWN} more" if len(pending) > NAMES_SHOWN else ""
            self.stdout.write(f"Migrating {len(pending)} schema(s): {shown}{more}.", self.style.NOTICE)
        return pending

    def tenant_schema_names(self, public: str) -> list[str]:
        schemas = get_tenant_model().objects.exclude(schema_name=public)
        order = get_tenant_migration_order()
        if order is not None:
            schemas = schemas.order_by(*order)
        return list(schemas.values_list("schema_name", flat=True))


def close_pool_before_fork(connection) -> None:
    """Close the process's psycopg pool, not only the connection, before workers are forked.

    django-tenants' multiprocessing executor closes the connection and forks; with a pool
    (settings DATABASE_POOL_MAX) that only hands the connection back to the pool, which the
    workers inherit with its open sockets but without its threads: two workers then talk
    over one socket and the run hangs. Each worker opens a pool of its own instead.
    """
    connection.close()
    if connection.settings_dict["OPTIONS"].get("pool"):
        connection.close_pool()
