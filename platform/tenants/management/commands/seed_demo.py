"""Seed the demo tenant for local development (idempotent)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from config.env import DATA_DIR
from tenants.models import Tenant
from tenants.services import tenant_admin_url, tenant_provision

DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.test"


class Command(BaseCommand):
    help = "Create the demo tenant (and its admin login) if it does not exist; print the login."

    def handle(self, *args, **options):
        if settings.KEYFLOW_ENV == "production":
            self.stderr.write("seed_demo is for development only; nothing done.")
            return
        login_file = DATA_DIR / "demo-login.txt"
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
        if tenant is None:
            provisioned = tenant_provision(name="Demo", slug=DEMO_SLUG, admin_email=DEMO_EMAIL)
            tenant = provisioned.tenant
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            login_file.write_text(f"{provisioned.admin_email} {provisioned.admin_password}\n")
            login_file.chmod(0o600)
        email, _, password = (
            login_file.read_text().strip().partition(" ") if login_file.exists() else (DEMO_EMAIL, "", "")
        )
        domain = tenant.get_primary_domain().domain
        self.stdout.write(f"[keyflow] Demo tenant admin: {tenant_admin_url(domain)}")
        self.stdout.write(f"[keyflow]   login {email} / password {password or '(see .data/demo-login.txt)'}")
