"""migrate_schemas skips the schemas that already record every migration, and only those."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.core.management import call_command, get_commands, load_command_class
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from tenants.management.commands.migrate_schemas import Command
from tenants.migration_state import migrations_wanted, schemas_up_to_date
from tenants.models import Tenant


def migrate_schemas(capsys, *args) -> str:
    call_command(Command(), *args)
    return capsys.readouterr().out


def all_schemas() -> list[str]:
    return ["public", *Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)]


def leaf(app: str) -> tuple[str, str]:
    (node,) = MigrationLoader(None).graph.leaf_nodes(app)
    return node


def tenants_leaf() -> tuple[str, str]:
    """A migration that changes no table when applied again in a tenant schema: the latest
    of the `tenants` app, whose tables live in public only."""
    return leaf("tenants")


def workflows_leaf() -> tuple[str, str]:
    """The same for the public schema: the `workflows` app has tables in tenant schemas only."""
    return leaf("workflows")


def forget(schema: str, migration: tuple[str, str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{schema}".django_migrations WHERE app = %s AND name = %s', list(migration)
        )
        assert cursor.rowcount == 1


def recorded(schema: str, migration: tuple[str, str]) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT 1 FROM "{schema}".django_migrations WHERE app = %s AND name = %s', list(migration)
        )
        return cursor.fetchone() is not None


@pytest.mark.parametrize("executor", ["standard", "multiprocessing"])
def test_schemas_up_to_date_are_all_skipped(db, tenant_a, tenant_b, capsys, executor):
    schemas = all_schemas()
    assert {"alpha", "beta"} <= set(schemas)

    out = migrate_schemas(capsys, "--executor", executor)

    assert f"{len(schemas)} of {len(schemas)} schema(s) up to date: skipped." in out
    assert "Migrating" not in out
    assert "=== Starting migration" not in out


def test_only_the_schema_missing_a_migration_is_migrated(db, tenant_a, tenant_b, capsys):
    schemas = all_schemas()
    missing = tenants_leaf()
    forget("beta", missing)

    out = migrate_schemas(capsys, "--executor", "standard")

    assert f"{len(schemas) - 1} of {len(schemas)} schema(s) up to date: skipped." in out
    assert "Migrating 1 schema(s): beta." in out
    assert "standard:beta] === Starting migration" in out
    assert f"Applying {missing[0]}.{missing[1]}... OK" in out
    assert out.count("=== Starting migration") == 1
    assert recorded("beta", missing)
    # Complete again: the next run has nothing to do.
    out = migrate_schemas(capsys)
    assert f"{len(schemas)} of {len(schemas)} schema(s) up to date: skipped." in out


def test_the_template_and_public_are_migrated_when_behind(db, tenant_a, capsys, settings):
    from tenants.services import tenant_template_ensure

    settings.TENANT_CREATION_FAKES_MIGRATIONS = True  # KEYFLOW_TENANT_FROM_TEMPLATE=true
    tenant_template_ensure()
    forget(settings.TENANT_BASE_SCHEMA, tenants_leaf())
    forget("public", workflows_leaf())

    out = migrate_schemas(capsys, "--executor", "standard")

    assert "Migrating 1 schema(s): public." in out
    assert f"Migrating 1 schema(s): {settings.TENANT_BASE_SCHEMA}." in out
    total = len(all_schemas())
    assert f"{total - 2} of {total} schema(s) up to date: skipped." in out
    assert out.count("=== Starting migration") == 2
    assert recorded("public", workflows_leaf())
    assert recorded(settings.TENANT_BASE_SCHEMA, tenants_leaf())


def test_a_new_migration_makes_every_schema_behind(db, tenant_a, tenant_b):
    schemas = all_schemas()
    wanted = migrations_wanted()
    assert schemas_up_to_date(schema_names=schemas, wanted=wanted, connection=connection) == set(schemas)

    with_new = wanted | {("workflows", "9999_not_applied_anywhere")}
    assert schemas_up_to_date(schema_names=schemas, wanted=with_new, connection=connection) == set()


def test_a_schema_without_migrations_table_is_behind(db):
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "fresh_schema"')
    assert schemas_up_to_date(
        schema_names=["fresh_schema", "no_such_schema"], wanted=migrations_wanted(), connection=connection
    ) == set()


def test_schema_tenant_and_shared_options_choose_the_schemas(db, tenant_a, tenant_b, capsys):
    tenant_count = len(all_schemas()) - 1
    missing = tenants_leaf()
    forget("alpha", missing)

    out = migrate_schemas(capsys, "--schema", "beta")
    assert "1 of 1 schema(s) up to date: skipped." in out
    assert "=== Starting migration" not in out

    out = migrate_schemas(capsys, "--shared")
    assert "1 of 1 schema(s) up to date: skipped." in out
    assert "=== Starting migration" not in out

    out = migrate_schemas(capsys, "--schema", "alpha", "--executor", "standard")
    assert "0 of 1 schema(s) up to date: skipped." in out
    assert "Migrating 1 schema(s): alpha." in out
    assert out.count("=== Starting migration") == 1
    assert recorded("alpha", missing)

    out = migrate_schemas(capsys, "--tenant")
    assert f"{tenant_count} of {tenant_count} schema(s) up to date: skipped." in out

    with pytest.raises(RuntimeError, match="does not exist"):
        migrate_schemas(capsys, "--schema", "no_such_schema")


def test_every_schema_runs_migrate_in_every_schema(db, tenant_a, tenant_b, capsys):
    out = migrate_schemas(capsys, "--every-schema", "--executor", "standard")

    assert "up to date" not in out
    assert out.count("=== Starting migration") == len(all_schemas())


RUN_ENDS = "--- run ends ---"


def in_a_process(database: str, *runs: tuple[str, ...]) -> list[str]:
    """Run the command in a new process against `database`, once per argument tuple; the
    output of each run."""
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["DATABASE_URL"] = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path="/" + database))
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "platform"), str(repo)])
    script = "\n".join([
        "import django; django.setup()",
        "from django.core.management import call_command",
        "from tenants.management.commands.migrate_schemas import Command",
        *(f"call_command(Command(), *{list(args)!r}); print({RUN_ENDS!r}, flush=True)"
          for args in runs),
    ])
    finished = subprocess.run([sys.executable, "-c", script], env=env, cwd=repo, timeout=60,
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout.split(RUN_ENDS)[:-1]


def test_multiprocessing_workers_migrate_without_sharing_pooled_connections(db, tenant_a):
    """The workers are forked: had they inherited the parent's connection pool they would
    share its sockets, and the run would hang or fail (it did, with PostgreSQL pooling on)."""
    assert settings.DATABASES["default"]["OPTIONS"].get("pool"), "this needs the pool on"

    (out,) = in_a_process(connection.settings_dict["NAME"],
                          ("--tenant", "--every-schema", "--executor", "multiprocessing"))

    assert out.count("=== Starting migration") == len(all_schemas()) - 1
    assert "multiprocessing:alpha] === Starting migration" in out


def test_a_new_database_is_migrated_then_skipped():
    """As on the first `dev.py run`: public is migrated before the tenants are listed."""
    import psycopg

    server = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS keyflow_migrate_new")
        admin.execute("CREATE DATABASE keyflow_migrate_new")
        try:
            first, again = in_a_process("keyflow_migrate_new", ("--executor", "standard"), ())
        finally:
            admin.execute("DROP DATABASE keyflow_migrate_new WITH (FORCE)")

    assert "Migrating 1 schema(s): public." in first
    assert "Applying tenants.0001_initial... OK" in first
    assert "0 of 1 schema(s) up to date: skipped." in first
    assert "1 of 1 schema(s) up to date: skipped." in again
    assert "=== Starting migration" not in again


def test_quiet_when_verbosity_is_zero(db, tenant_a, capsys):
    assert migrate_schemas(capsys, "-v", "0") == ""


def test_manage_py_runs_this_command():
    """`manage.py migrate_schemas` (dev.py run, deploys, tenant creation) and its alias
    `migrate` must reach this command, not django-tenants' own: the first app in
    INSTALLED_APPS providing a command wins, so `tenants` has to come before `django_tenants`."""
    for name in ("migrate_schemas", "migrate"):
        assert get_commands()[name] == "tenants", name
        assert isinstance(load_command_class("tenants", name), Command)
