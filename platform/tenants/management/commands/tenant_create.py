from django.core.management.base import BaseCommand, CommandError

from tenants.services import TenantError, tenant_provision


class Command(BaseCommand):
    help = "Create a tenant: schema, domain <slug>.<base domain> and an admin user."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--admin-email", required=True)

    def handle(self, *args, name, slug, admin_email, **options):
        self.stdout.write(f"Creating tenant {slug}: schema, migrations, domain, admin user…")
        try:
            provisioned = tenant_provision(name=name, slug=slug, admin_email=admin_email)
        except TenantError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Tenant {provisioned.tenant.slug} is ready."))
        self.stdout.write(f"  admin:    {provisioned.admin_url}")
        self.stdout.write(f"  login:    {provisioned.admin_email}")
        self.stdout.write(f"  password: {provisioned.admin_password}  (shown once; store it now)")
