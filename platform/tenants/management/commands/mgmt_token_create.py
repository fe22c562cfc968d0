from django.core.management.base import BaseCommand, CommandError

from tenants.models import ApiToken, Tenant
from tenants.services import api_token_issue


class Command(BaseCommand):
    help = "Create a management API token (kf-…) for a tenant; it is printed once."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args, tenant, name, **options):
        record = Tenant.objects.filter(slug=tenant).first()
        if record is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        issued = api_token_issue(tenant=record, scope=ApiToken.Scope.MANAGEMENT, name=name)
        self.stdout.write(issued.token)
        self.stderr.write("Shown once: store it now. Only its hash is kept.")
