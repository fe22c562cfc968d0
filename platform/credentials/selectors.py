"""Reads on credentials (in the current tenant's schema)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from credentials.errors import CredentialNotFound
from credentials.models import Credential


def credential_list(
    *, provider: str | None = None, status: str | None = None, owner: str | None = None
) -> QuerySet[Credential]:
    queryset = Credential.objects.all()
    if provider:
        queryset = queryset.filter(provider=provider)
    if status:
        queryset = queryset.filter(status=status)
    if owner is not None:
        queryset = queryset.filter(owner=owner)
    return queryset.order_by("provider", "name", "id")


def credential_get(*, credential_id) -> Credential:
    """The credential with this id in the current tenant; a malformed, foreign or missing id
    all raise the same CredentialNotFound."""
    try:
        parsed = uuid.UUID(str(credential_id))
    except (ValueError, TypeError, AttributeError):
        raise CredentialNotFound() from None
    credential = Credential.objects.filter(pk=parsed).first()
    if credential is None:
        raise CredentialNotFound()
    return credential
