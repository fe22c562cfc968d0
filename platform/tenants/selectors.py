"""Reads on tenants and the token index."""

from __future__ import annotations

from tenants.models import ApiToken, Domain, Tenant
from tenants.services import TOKEN_PREFIXES, api_token_hash


def token_looks_like_api_token(token: str) -> bool:
    return token.startswith(tuple(TOKEN_PREFIXES.values()))


def api_token_get(*, token: str) -> ApiToken | None:
    """The token's index row with its tenant, or None when unknown or revoked."""
    if not token_looks_like_api_token(token):
        return None
    record = (
        ApiToken.objects.select_related("tenant")
        .filter(token_hash=api_token_hash(token), revoked_at__isnull=True)
        .first()
    )
    return record


def tenant_get_by_host(*, hostname: str) -> Tenant | None:
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    return domain.tenant if domain else None


def tenant_list() -> list[Tenant]:
    """Every tenant (not the public schema, nor the template new tenants are cloned from)."""
    from django.conf import settings

    return list(
        Tenant.objects.exclude(schema_name__in=["public", getattr(settings, "TENANT_BASE_SCHEMA", "")])
        .order_by("slug")
    )
