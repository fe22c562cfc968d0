"""Writes on credentials. Every change is audited; secrets never leave this module in clear
except inside a ProviderCredential handed to a provider call."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from credentials.errors import CredentialInvalid
from credentials.models import Credential, CredentialEvent
from credentials.providers.base import ProviderConfigError, ProviderCredential, ValidationResult
from credentials.providers.registry import UnknownProvider, provider_registry

logger = logging.getLogger(__name__)

NAME_MAX = 200
OWNER_MAX = 255


def credential_fingerprint(*, provider: str, material: str) -> str:
    """A keyed hash of the key: stable, comparable, and useless to anyone without the key."""
    digest = hmac.new(
        settings.KEYFLOW_FINGERPRINT_KEY.encode(), f"{provider}:{material}".encode(), hashlib.sha256
    )
    return digest.hexdigest()


def _provider(provider_id: str):
    try:
        return provider_registry().get(provider_id)
    except UnknownProvider:
        known = ", ".join(provider_registry().ids())
        raise CredentialInvalid(
            {"provider": f"Unknown provider {str(provider_id)[:64]!r}; use one of: {known}."}
        ) from None


def _clean_fields(provider, secrets: Mapping, config: Mapping) -> tuple[dict, dict]:
    try:
        return provider.clean(secrets, config)
    except ProviderConfigError as exc:
        raise CredentialInvalid(exc.errors) from None


def _clean_text(field: str, value: str | None, *, max_length: int, required: bool) -> str:
    value = (value or "").strip() if isinstance(value, str) or value is None else None
    if value is None:
        raise CredentialInvalid({field: "Enter a string."})
    if required and not value:
        raise CredentialInvalid({field: "This field is required."})
    if len(value) > max_length:
        raise CredentialInvalid({field: f"Ensure this value has at most {max_length} characters."})
    return value


def _seal(credential: Credential, provider, secrets: dict[str, str]) -> None:
    material = provider.fingerprint_material(secrets)
    credential.secrets = json.dumps(secrets)
    credential.fingerprint = credential_fingerprint(provider=provider.id, material=material)
    credential.hint = material[-4:] if len(material) >= 8 else ""


def _audit(credential: Credential, action: str, actor: str, **details) -> None:
    CredentialEvent.objects.create(
        credential_id=credential.id,
        credential_name=credential.name,
        action=action,
        actor=actor,
        details=details,
    )


def _save(credential: Credential, **kwargs) -> None:
    try:
        with transaction.atomic():
            credential.save(**kwargs)
    except IntegrityError as exc:
        if "credential_one_active_default_per_provider" in str(exc):
            raise CredentialInvalid(
                {"is_default": f"Provider {credential.provider} already has an active default "
                 "credential; set this one as default to switch."}
            ) from None
        raise


@transaction.atomic
def credential_create(
    *,
    provider: str,
    name: str,
    secrets: Mapping[str, str],
    config: Mapping[str, str] | None = None,
    is_default: bool = False,
    owner: str = "",
    actor: str = "",
) -> Credential:
    """Store a new credential (secrets encrypted)."""
    plugin = _provider(provider)
    name = _clean_text("name", name, max_length=NAME_MAX, required=True)
    owner = _clean_text("owner", owner, max_length=OWNER_MAX, required=False)
    if is_default and owner:
        raise CredentialInvalid({"is_default": "A credential owned by an end user cannot be a default."})
    clean_secrets, clean_config = _clean_fields(plugin, secrets or {}, config or {})
    credential = Credential(
        provider=plugin.id, name=name, config=clean_config, is_default=is_default, owner=owner,
        created_by=actor, updated_by=actor,
    )
    _seal(credential, plugin, clean_secrets)
    _save(credential)
    _audit(credential, CredentialEvent.Action.CREATED, actor, provider=plugin.id,
           is_default=is_default, owner=owner, config=sorted(clean_config))
    logger.info("Credential %s (%s) created by %s", credential.id, plugin.id, actor or "system")
    return credential


@transaction.atomic
def credential_update(
    *,
    credential: Credential,
    actor: str = "",
    name: str | None = None,
    secrets: Mapping[str, str] | None = None,
    config: Mapping[str, str] | None = None,
    owner: str | None = None,
) -> Credential:
    """Change a credential. Secret fields left out (or empty) keep their stored value;
    giving a new secret rotates the key under the same id."""
    plugin = _provider(credential.provider)
    changed: list[str] = []
    if name is not None:
        credential.name = _clean_text("name", name, max_length=NAME_MAX, required=True)
        changed.append("name")
    if owner is not None:
        owner = _clean_text("owner", owner, max_length=OWNER_MAX, required=False)
        if owner and credential.is_default:
            raise CredentialInvalid({"owner": "A default credential cannot be owned by an end user."})
        credential.owner = owner
        changed.append("owner")
    new_secrets = {k: v for k, v in (secrets or {}).items() if v not in (None, "")}
    rotated = False
    if new_secrets or config is not None:
        current = credential_secrets(credential)
        merged_secrets = {**current, **new_secrets}
        merged_config = dict(config) if config is not None else dict(credential.config)
        clean_secrets, clean_config = _clean_fields(plugin, merged_secrets, merged_config)
        if clean_config != credential.config:
            credential.config = clean_config
            changed.append("config")
        if clean_secrets != current:
            _seal(credential, plugin, clean_secrets)
            rotated = True
            changed.append("secrets")
        if rotated or "config" in changed:
            credential.version += 1
            credential.validation_status = Credential.Validation.UNKNOWN
            credential.validation_message = ""
            credential.validated_at = None
    credential.updated_by = actor
    _save(credential)
    if rotated:
        _audit(credential, CredentialEvent.Action.SECRET_ROTATED, actor, fields=sorted(new_secrets))
    if [c for c in changed if c != "secrets"]:
        _audit(credential, CredentialEvent.Action.UPDATED, actor,
               fields=[c for c in changed if c != "secrets"])
    return credential


@transaction.atomic
def credential_set_default(*, credential: Credential, actor: str = "") -> Credential:
    """Make this the provider's default, taking the flag from the previous default."""
    if not credential.is_active:
        raise CredentialInvalid({"is_default": "A disabled credential cannot be the default."})
    if credential.owner:
        raise CredentialInvalid({"is_default": "A credential owned by an end user cannot be a default."})
    previous = list(
        Credential.objects.select_for_update()
        .filter(provider=credential.provider, is_default=True)
        .exclude(pk=credential.pk)
    )
    for other in previous:
        other.is_default = False
        other.updated_by = actor
        other.save(update_fields=["is_default", "updated_by", "updated_at"])
    credential.is_default = True
    credential.updated_by = actor
    _save(credential, update_fields=["is_default", "updated_by", "updated_at"])
    _audit(credential, CredentialEvent.Action.SET_DEFAULT, actor,
           previous=[str(other.id) for other in previous])
    return credential


@transaction.atomic
def credential_disable(*, credential: Credential, actor: str = "") -> Credential:
    """Disable: no run may use it. A disabled default stops being the default."""
    credential.status = Credential.Status.DISABLED
    was_default = credential.is_default
    credential.is_default = False
    credential.updated_by = actor
    credential.save(update_fields=["status", "is_default", "updated_by", "updated_at"])
    _audit(credential, CredentialEvent.Action.DISABLED, actor, was_default=was_default)
    return credential


@transaction.atomic
def credential_enable(*, credential: Credential, actor: str = "") -> Credential:
    credential.status = Credential.Status.ACTIVE
    credential.updated_by = actor
    credential.save(update_fields=["status", "updated_by", "updated_at"])
    _audit(credential, CredentialEvent.Action.ENABLED, actor)
    return credential


@transaction.atomic
def credential_delete(*, credential: Credential, actor: str = "") -> None:
    _audit(credential, CredentialEvent.Action.DELETED, actor, provider=credential.provider)
    credential.delete()


def credential_secrets(credential: Credential) -> dict[str, str]:
    """The decrypted secret fields. Only for building a ProviderCredential or re-sealing."""
    return json.loads(credential.secrets)


def credential_for_provider(credential: Credential) -> ProviderCredential:
    """What a provider call needs; lives only in this process's memory."""
    return ProviderCredential(
        credential_id=str(credential.id),
        secrets=credential_secrets(credential),
        config=credential.config,
        version=f"{credential.version}:{credential.fingerprint[:16]}",
    )


def credential_validate(*, credential: Credential, actor: str = "") -> ValidationResult:
    """Ask the provider whether the key works (a cheap real call) and record the answer."""
    plugin = _provider(credential.provider)
    result = plugin.validate(credential_for_provider(credential))
    if result.ok:
        status = Credential.Validation.VALID
    elif result.retryable:
        status = Credential.Validation.ERROR
    else:
        status = Credential.Validation.INVALID
    Credential.objects.filter(pk=credential.pk).update(
        validation_status=status,
        validation_message=result.message[:1000],
        validated_at=timezone.now(),
    )
    credential.refresh_from_db()
    _audit(credential, CredentialEvent.Action.VALIDATED, actor, result=status,
           provider_status=result.status)
    return result


# last_used_at is informative (as for API tokens): a process writes it at most once a
# minute per credential instead of once per LLM call.
LAST_USED_RESOLUTION_SECONDS = 60
_last_touched: dict[tuple[str, str], float] = {}


def credential_touch(*, credential_id, schema: str | None = None) -> None:
    key = (schema or connection.schema_name, str(credential_id))
    now = time.monotonic()
    if now - _last_touched.get(key, -LAST_USED_RESOLUTION_SECONDS) < LAST_USED_RESOLUTION_SECONDS:
        return
    Credential.objects.filter(pk=credential_id).update(last_used_at=timezone.now())
    if len(_last_touched) > 10_000:
        _last_touched.clear()
    _last_touched[key] = now
