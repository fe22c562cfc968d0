from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import tenant_resume, tenant_suspend


class Command(BaseCommand):
    help = "Suspend a tenant (its hosts and tokens answer 403; data is kept), or --resume it."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--resume", action="store_true", help="Resume instead of suspend.")

    def handle(self, *args, slug, resume, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        if resume:
            tenant_resume(tenant=tenant)
            self.stdout.write(self.style.SUCCESS(f"Tenant {slug} resumed."))
        else:
            tenant_suspend(tenant=tenant)
            self.stdout.write(self.style.SUCCESS(f"Tenant {slug} suspended."))
