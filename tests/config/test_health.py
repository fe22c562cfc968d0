import pytest
from django.test import Client


@pytest.mark.parametrize("host", ["localhost", "alpha.localhost", "unknown.localhost"])
def test_healthz_answers_on_every_host(db, tenant_a, host):
    response = Client().get("/healthz", HTTP_HOST=host)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_redis(db):
    response = Client().get("/readyz", HTTP_HOST="unknown.localhost")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "broker": "ok",
        "redis": "ok",
    }


def test_readyz_reports_an_unreachable_broker_as_503(db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz", HTTP_HOST="localhost")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["status"] == "unavailable"
    assert "127.0.0.1:1" not in response.content.decode()
