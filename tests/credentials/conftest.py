import pytest
from django.db import connection

from tests.conftest import canary_key


@pytest.fixture
def alpha(db, tenant_a):
    """Run in tenant alpha's schema."""
    connection.set_tenant(tenant_a)
    yield tenant_a
    connection.set_schema_to_public()


@pytest.fixture
def openai_key():
    return canary_key()


@pytest.fixture
def make_credential(alpha, fake):
    from credentials.services import credential_create

    def make(**overrides):
        values = {
            "provider": "openai",
            "name": "Team key",
            "secrets": {"api_key": canary_key()},
            "config": {"base_url": fake.url + "/v1"},
            "actor": "test",
        }
        values.update(overrides)
        return credential_create(**values)

    return make
