"""Errors of credential operations, in Dify's error shape."""

from __future__ import annotations

from api.errors import ApiError, NotFound


class CredentialInvalid(ApiError):
    """Input for a credential is wrong; `errors` maps each field to what is wrong with it."""

    status = 400
    code = "invalid_param"

    def __init__(self, errors: dict[str, str], *, code: str | None = None):
        self.errors = dict(errors)
        message = "; ".join(f"{field}: {text}" for field, text in self.errors.items())
        super().__init__(message, code=code)


class CredentialNotFound(NotFound):
    code = "credential_not_found"
    message = "Credential not found."
