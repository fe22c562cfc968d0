from django.core.management.base import BaseCommand

from tenants.selectors import tenant_list


class Command(BaseCommand):
    help = "List tenants with their status, schema and domains."

    def handle(self, *args, **options):
        tenants = tenant_list()
        self.stdout.write(f"{'slug':<24} {'status':<10} {'schema':<24} domains")
        for tenant in tenants:
            domains = ", ".join(d.domain for d in tenant.domains.all())
            self.stdout.write(f"{tenant.slug:<24} {tenant.status:<10} {tenant.schema_name:<24} {domains}")
        self.stdout.write(f"{len(tenants)} tenant(s)")
