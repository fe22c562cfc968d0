"""Errors of budgets, in Dify's error shape."""

from __future__ import annotations

from api.errors import ApiError, NotFound


class QuotaExceeded(ApiError):
    """A run refused before it is queued: its credential or end user is over a budget
    (`quota_exceeded`) or a rate limit (`too_many_requests`). Carries Retry-After when
    the limit lifts by itself."""

    status = 429
    code = "quota_exceeded"
    message = "A budget of this request is used up."

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None):
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(message, code=code, headers=headers)
        self.retry_after = retry_after


CODE_BUDGET = "quota_exceeded"
CODE_RATE = "too_many_requests"


class BudgetInvalid(ApiError):
    status = 400
    code = "invalid_param"


class BudgetCredentialDisabled(ApiError):
    status = 400
    code = "credential_disabled"


class BudgetAppKeyRevoked(ApiError):
    status = 400
    code = "key_revoked"


class BudgetExists(ApiError):
    status = 409
    code = "budget_exists"


class BudgetsUnavailable(ApiError):
    status = 503
    code = "service_unavailable"
    message = "Budgets cannot be changed right now (their store, Redis, is unreachable); retry shortly."


class BudgetNotFound(NotFound):
    code = "budget_not_found"
    message = "Budget not found."
