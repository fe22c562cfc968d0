"""Seed the demo tenant for local development (idempotent)."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django_tenants.utils import tenant_context

from config.env import DATA_DIR
from credentials.models import Credential
from credentials.services import credential_create, credential_update
from tenants.models import Tenant
from tenants.services import tenant_admin_url, tenant_provision
from workflows.examples import SUMMARIZER, TRIAGE_TWO_PROVIDERS
from workflows.models import App
from workflows.services import app_create, app_key_issue

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
        with tenant_context(tenant):
            if settings.KEYFLOW_FAKE_LLM_URL:
                self._seed_credentials(settings.KEYFLOW_FAKE_LLM_URL.rstrip("/"))
            keys = self._seed_apps(tenant)
        email, _, password = (
            login_file.read_text().strip().partition(" ") if login_file.exists() else (DEMO_EMAIL, "", "")
        )
        domain = tenant.get_primary_domain().domain
        self.stdout.write(f"[keyflow] Demo tenant admin: {tenant_admin_url(domain)}")
        self.stdout.write(f"[keyflow]   login {email} / password {password or '(see .data/demo-login.txt)'}")
        for app_name, key in keys.items():
            self.stdout.write(f"[keyflow] Demo app {app_name!r} Service API key: {key}")

    def _seed_apps(self, tenant) -> dict[str, str]:
        """The two example apps, each with a Service API key kept in .data/ for the demo."""
        import json

        keys_file = DATA_DIR / "demo-app-keys.json"
        keys = json.loads(keys_file.read_text()) if keys_file.exists() else {}
        for name, graph in (("Summarizer", SUMMARIZER), ("Ticket triage", TRIAGE_TWO_PROVIDERS)):
            app = App.objects.filter(name=name).first()
            if app is None:
                app = app_create(name=name, mode=App.Mode.WORKFLOW, graph=graph,
                                 description="Example app seeded for the demo tenant.")
            if name not in keys:
                keys[name] = app_key_issue(tenant=tenant, app=app, name="demo").token
        keys_file.write_text(json.dumps(keys, indent=2))
        keys_file.chmod(0o600)
        return keys

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
