"""Seed the demo tenant for local development (idempotent)."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from config.env import DATA_DIR
from credentials.models import Credential
from credentials.services import credential_create, credential_update
from tenants.models import Tenant
from tenants.services import tenant_admin_url, tenant_provision

DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.test"
# Default credentials of the demo tenant, answered by the local fake LLM provider.
DEMO_CREDENTIALS = [
    ("openai", "Demo OpenAI (fake provider)", "sk-demo-openai-0000000000000000", "/v1"),
    ("anthropic", "Demo Anthropic (fake provider)", "sk-ant-demo-000000000000000000", ""),
]


class Command(BaseCommand):
    help = "Create the demo tenant, its admin login and default credentials; print the login."

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
        if settings.KEYFLOW_FAKE_LLM_URL:
            with schema_context(tenant.schema_name):
                self._seed_credentials(settings.KEYFLOW_FAKE_LLM_URL.rstrip("/"))
        email, _, password = (
            login_file.read_text().strip().partition(" ") if login_file.exists() else (DEMO_EMAIL, "", "")
        )
        domain = tenant.get_primary_domain().domain
        self.stdout.write(f"[keyflow] Demo tenant admin: {tenant_admin_url(domain)}")
        self.stdout.write(f"[keyflow]   login {email} / password {password or '(see .data/demo-login.txt)'}")

    def _seed_credentials(self, fake_url: str) -> None:
        # The fake provider's port can change between runs: keep base_url pointing at it.
        for provider, name, key, path in DEMO_CREDENTIALS:
            config = {"base_url": fake_url + path}
            existing = Credential.objects.filter(provider=provider, name=name).first()
            if existing is None:
                credential_create(provider=provider, name=name, secrets={"api_key": key},
                                  config=config, is_default=True, actor="seed_demo")
            elif existing.config != config:
                credential_update(credential=existing, config=config, actor="seed_demo")
