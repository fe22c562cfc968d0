"""Which credential pays for each provider of a run: validation of `credential_overrides`
at submission, and resolution again in the worker.

Order for a provider P: the request's override for P, else the app's bound credential for
P, else the tenant's default for P. Nothing silently falls back to another payer: a
credential that is missing, disabled or not the caller's is a refusal, not a fallback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.utils import timezone

from api.errors import ApiError
from credentials.models import Credential
from credentials.providers.base import ProviderConfigError, ProviderCredential
from credentials.providers.registry import provider_registry
from credentials.services import credential_fingerprint, credential_for_provider

SOURCE_OVERRIDE = "override"
SOURCE_APP = "app"
SOURCE_DEFAULT = "default"
SOURCE_INLINE = "inline"


class OverrideRefused(ApiError):
    """`credential_overrides` (or the lack of any credential) refuses the run before it exists."""

    status = 400
    code = "invalid_credential_override"


def _refuse(code: str, message: str, status: int = 400) -> OverrideRefused:
    return OverrideRefused(message, code=code, status=status)


class PolicyInvalid(ApiError):
    status = 400
    code = "invalid_param"


@dataclass(frozen=True)
class OverridePolicy:
    """What an app key lets its callers choose. Stored in the token's `policy`."""

    allow_overrides: bool = True
    # Providers whose credential may be overridden; None means every provider.
    providers: frozenset[str] | None = None
    allow_inline: bool = False
    # Hosts an inline key's endpoint (base_url) may point at; empty forbids any endpoint.
    inline_endpoint_hosts: frozenset[str] = frozenset()
    # Not about overrides, but stored in the same policy: the key's own requests-per-minute
    # limit, read by api.throttling (None: the platform default).
    rate_limit_per_minute: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "inline_endpoint_hosts", frozenset(h.lower() for h in self.inline_endpoint_hosts)
        )

    @classmethod
    def from_dict(cls, data: Mapping | None) -> OverridePolicy:
        """Read a stored or submitted policy; wrong types are refused, never coerced."""
        data = data or {}
        if not isinstance(data, Mapping):
            raise PolicyInvalid("policy must be an object.")
        unknown = set(data) - {"allow_overrides", "override_providers", "allow_inline_keys",
                               "inline_endpoint_hosts", "rate_limit_per_minute"}
        if unknown:
            raise PolicyInvalid(f"policy: unknown field(s) {', '.join(sorted(map(str, unknown)))}.")

        def flag(name: str, default: bool) -> bool:
            value = data.get(name, default)
            if not isinstance(value, bool):
                raise PolicyInvalid(f"policy.{name} must be true or false.")
            return value

        def names(name: str, *, nullable: bool) -> list[str] | None:
            value = data.get(name, None if nullable else [])
            if value is None and nullable:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise PolicyInvalid(f"policy.{name} must be a list of names.")
            return [v.strip() for v in value]

        rate_limit = data.get("rate_limit_per_minute")
        if rate_limit is not None and (
            isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1
        ):
            raise PolicyInvalid("policy.rate_limit_per_minute must be a positive integer.")
        providers = names("override_providers", nullable=True)
        if providers is not None:
            unknown_providers = set(providers) - set(provider_registry().ids())
            if unknown_providers:
                raise PolicyInvalid(
                    f"policy.override_providers: unknown provider(s) {', '.join(sorted(unknown_providers))}."
                )
        return cls(
            allow_overrides=flag("allow_overrides", True),
            providers=frozenset(providers) if providers is not None else None,
            allow_inline=flag("allow_inline_keys", False),
            inline_endpoint_hosts=frozenset(names("inline_endpoint_hosts", nullable=False)),
            rate_limit_per_minute=rate_limit,
        )

    def to_dict(self) -> dict:
        body = {
            "allow_overrides": self.allow_overrides,
            "override_providers": sorted(self.providers) if self.providers is not None else None,
            "allow_inline_keys": self.allow_inline,
            "inline_endpoint_hosts": sorted(self.inline_endpoint_hosts),
        }
        if self.rate_limit_per_minute is not None:
            body["rate_limit_per_minute"] = self.rate_limit_per_minute
        return body


@dataclass(frozen=True)
class InlineKey:
    """A one-off key from the request, cleaned by its provider. Never stored in clear."""

    secrets: Mapping[str, str] = field(repr=False)
    config: Mapping[str, str]
    fingerprint: str


@dataclass(frozen=True)
class PlannedCredential:
    provider: str
    source: str
    credential_id: str | None
    fingerprint: str
    inline: InlineKey | None = field(default=None, repr=False)

    def to_plan(self, inline_id: str | None = None) -> dict:
        """The run record's view: ids and fingerprint only."""
        return {
            "source": self.source,
            "credential_id": inline_id if self.source == SOURCE_INLINE else self.credential_id,
            "fingerprint": self.fingerprint,
        }


def _parse_id(provider: str, raw: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except (ValueError, TypeError, AttributeError):
        raise _refuse(
            "invalid_param", f"credential_overrides.{provider} is not a credential id (a UUID)."
        ) from None


def _not_found(provider: str, credential_id) -> OverrideRefused:
    # Same status and message for a missing id and another tenant's id.
    return _refuse(
        "credential_not_found", f"credential_overrides.{provider}: credential {credential_id} not found."
    )


def _check_usable(credential: Credential, *, provider: str, user: str, where: str) -> None:
    if credential.provider != provider:
        raise _refuse(
            "credential_provider_mismatch",
            f"{where}: credential {credential.id} is a {credential.provider} credential, not {provider}.",
        )
    if not credential.is_active:
        raise _refuse("credential_disabled", f"{where}: credential {credential.id} is disabled.")
    if credential.owner and credential.owner != user:
        raise _refuse(
            "credential_owner_mismatch",
            f"{where}: credential {credential.id} belongs to another end user.",
            status=403,
        )


def _endpoint_fields(plugin) -> list[str]:
    return [spec.name for spec in plugin.config_fields if spec.kind == "url"]


def _inline_key(provider: str, value: Mapping, policy: OverridePolicy) -> InlineKey:
    if not policy.allow_inline:
        raise _refuse(
            "inline_key_not_allowed",
            f"credential_overrides.{provider}: this app key does not allow one-off keys.",
            status=403,
        )
    plugin = provider_registry().get(provider)
    secret_names = {spec.name for spec in plugin.secret_fields}
    secrets = {k: v for k, v in value.items() if k in secret_names}
    config = {k: v for k, v in value.items() if k not in secret_names}
    try:
        clean_secrets, clean_config = plugin.clean(secrets, config)
    except ProviderConfigError as exc:
        details = "; ".join(f"{name}: {text}" for name, text in sorted(exc.errors.items()))
        raise _refuse("invalid_param", f"credential_overrides.{provider}: {details}") from None
    for name in _endpoint_fields(plugin):
        if name in clean_config:
            host = (urlsplit(clean_config[name]).hostname or "").lower()
            if host not in policy.inline_endpoint_hosts:
                raise _refuse(
                    "endpoint_not_allowed",
                    f"credential_overrides.{provider}.{name}: this app key does not allow "
                    f"sending a one-off key to {host or 'that endpoint'}.",
                    status=403,
                )
    material = plugin.fingerprint_material(clean_secrets)
    return InlineKey(
        secrets=clean_secrets,
        config=clean_config,
        fingerprint=credential_fingerprint(provider=provider, material=material),
    )


def credential_plan(
    *,
    providers_used: Collection[str],
    overrides: object,
    user: str,
    policy: OverridePolicy,
    app_id: object = None,
) -> dict[str, PlannedCredential]:
    """Decide who pays for each provider of a run, or refuse the run. Runs at submission,
    before anything is stored or queued.

    The app's (`app_id`) bindings are read in the same single query as the overrides and the
    tenant defaults: one SQL statement per submission, whatever the graph uses.
    """
    registry = provider_registry()
    if overrides in (None, {}):
        overrides = {}
    if not isinstance(overrides, dict):
        raise _refuse("invalid_param", "credential_overrides must be an object keyed by provider.")
    if overrides and not policy.allow_overrides:
        raise _refuse(
            "override_not_allowed", "This app key does not allow credential_overrides.", status=403
        )

    plan: dict[str, PlannedCredential] = {}
    wanted_ids: dict[str, uuid.UUID] = {}
    for provider, value in overrides.items():
        if provider not in registry:
            raise _refuse(
                "unknown_provider",
                f"credential_overrides: unknown provider {str(provider)[:64]!r}; "
                f"known: {', '.join(registry.ids())}.",
            )
        if provider not in providers_used:
            raise _refuse(
                "provider_not_used",
                f"credential_overrides.{provider}: this app does not use {provider}.",
            )
        if policy.providers is not None and provider not in policy.providers:
            raise _refuse(
                "override_not_allowed",
                f"credential_overrides.{provider}: this app key may not override {provider}.",
                status=403,
            )
        if isinstance(value, str):
            wanted_ids[provider] = _parse_id(provider, value)
        elif isinstance(value, dict) and set(value) == {"credential_id"}:
            wanted_ids[provider] = _parse_id(provider, value["credential_id"])
        elif isinstance(value, dict) and "credential_id" in value:
            raise _refuse(
                "credential_redirect_forbidden",
                f"credential_overrides.{provider}: a stored credential is used as stored; its "
                "endpoint and settings cannot be changed by a request.",
                status=403,
            )
        elif isinstance(value, dict) and value:
            inline = _inline_key(provider, value, policy)
            plan[provider] = PlannedCredential(
                provider=provider, source=SOURCE_INLINE, credential_id=None,
                fingerprint=inline.fingerprint, inline=inline,
            )
        else:
            raise _refuse(
                "invalid_param",
                f"credential_overrides.{provider} must be a credential id or an object with "
                "the one-off key's fields (e.g. api_key).",
            )

    remaining = [p for p in providers_used if p not in plan and p not in wanted_ids]
    candidates = _candidates(wanted_ids=list(wanted_ids.values()), remaining=remaining,
                             app_id=app_id)
    by_id = {credential.id: credential for credential in candidates}
    for provider, credential_id in wanted_ids.items():
        credential = by_id.get(credential_id)
        if credential is None:
            raise _not_found(provider, credential_id)
        _check_usable(credential, provider=provider, user=user, where=f"credential_overrides.{provider}")
        plan[provider] = PlannedCredential(
            provider=provider, source=SOURCE_OVERRIDE, credential_id=str(credential.id),
            fingerprint=credential.fingerprint,
        )

    app_bindings = {c.provider: c for c in candidates if c.provider in remaining and c.app_bound}
    defaults = {
        c.provider: c for c in candidates
        if c.provider in remaining and c.is_default and c.status == Credential.Status.ACTIVE
    }
    for provider in remaining:
        if provider in app_bindings:
            credential, source = app_bindings[provider], SOURCE_APP
            _check_usable(credential, provider=provider, user=user, where=f"the app's {provider} credential")
        elif provider in defaults:
            credential, source = defaults[provider], SOURCE_DEFAULT
        else:
            raise _refuse(
                "no_credential",
                f"No credential for provider {provider}: add a default {provider} credential, "
                f"bind one to the app, or pass credential_overrides.{provider}.",
            )
        plan[provider] = PlannedCredential(
            provider=provider, source=source, credential_id=str(credential.id),
            fingerprint=credential.fingerprint,
        )
    return plan


# Planning runs on every submission; written out, this query skips the ORM's compilation of
# the Exists() subquery (about 0.6 ms of CPU, more than the query itself). Unqualified table
# names resolve in the tenant's schema (search_path). Secrets are not read.
_CANDIDATES_SQL = """
    SELECT c.id, c.provider, c.name, c.is_default, c.owner, c.status, c.fingerprint, c.version,
           EXISTS (SELECT 1 FROM workflows_appcredentialbinding b
                   WHERE b.app_id = %(app_id)s AND b.provider = c.provider AND b.credential_id = c.id)
               AS app_bound
    FROM credentials_credential c
    WHERE c.id = ANY(%(wanted)s)
       OR (c.provider = ANY(%(remaining)s)
           AND ((c.is_default AND c.status = %(active)s)
                OR EXISTS (SELECT 1 FROM workflows_appcredentialbinding b
                           WHERE b.app_id = %(app_id)s AND b.provider = c.provider
                             AND b.credential_id = c.id)))
"""


def _candidates(*, wanted_ids: list, remaining: list[str], app_id) -> list[Credential]:
    """In one query: the credentials named by overrides, and for the other providers the
    tenant defaults and (with `app_id`) the app's bound credentials, marked `app_bound`."""
    if not wanted_ids and not remaining:
        return []
    return list(Credential.objects.raw(_CANDIDATES_SQL, {
        "wanted": list(wanted_ids), "remaining": list(remaining), "app_id": app_id,
        "active": Credential.Status.ACTIVE,
    }))


class CredentialUnavailable(Exception):
    """The planned credential cannot serve the run any more (disabled, deleted, expired)."""

    def __init__(self, message: str, *, credential_id: str | None):
        super().__init__(message)
        self.message = message
        self.credential_id = credential_id


def credential_resolve(*, provider: str, planned: Mapping, user: str) -> ProviderCredential:
    """In the worker: the planned credential, checked again, as the provider call needs it."""
    from workflows.models import InlineCredential

    credential_id = planned.get("credential_id")
    if planned.get("source") == SOURCE_INLINE:
        inline = InlineCredential.objects.filter(pk=credential_id).first()
        if inline is None or inline.expires_at <= timezone.now():
            raise CredentialUnavailable(
                f"The one-off {provider} key of this run has expired.", credential_id=credential_id
            )
        return ProviderCredential(
            credential_id=None, secrets=json.loads(inline.secrets), config=inline.config,
            version=inline.fingerprint[:16],
        )
    credential = Credential.objects.filter(pk=credential_id).first()
    if credential is None:
        raise CredentialUnavailable(
            f"Credential {credential_id} was deleted after the run was submitted.",
            credential_id=credential_id,
        )
    try:
        _check_usable(credential, provider=provider, user=user, where=f"{provider} credential")
    except OverrideRefused as exc:
        raise CredentialUnavailable(exc.message, credential_id=credential_id) from None
    return credential_for_provider(credential)
