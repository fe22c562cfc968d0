from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import TenantError, tenant_delete


class Command(BaseCommand):
    help = "Delete a tenant and DROP its schema. Requires --confirm <slug>."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--confirm", default="", help="Repeat the slug to confirm.")

    def handle(self, *args, slug, confirm, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        try:
            tenant_delete(tenant=tenant, confirm=confirm)
        except TenantError as exc:
            raise CommandError(f"{exc.message} (--confirm {slug})") from None
        self.stdout.write(self.style.SUCCESS(f"Tenant {slug} deleted; schema dropped."))
