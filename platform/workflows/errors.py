"""Errors of the Service API and app management, in Dify's error shape."""

from api.errors import ApiError, NotFound


class AppUnavailable(ApiError):
    status = 400
    code = "app_unavailable"
    message = "App unavailable, please check your app configurations."


class AppDisabled(ApiError):
    """Dify answers 403 `forbidden` for a deleted app or one whose API is disabled."""

    status = 403
    code = "forbidden"
    message = "The app's API service has been disabled."


class AppModeMismatch(ApiError):
    status = 400
    code = "not_workflow_app"
    message = "Please check if your app mode matches the right API route."


class InvalidInput(ApiError):
    status = 400
    code = "invalid_param"


class RunNotFound(NotFound):
    code = "not_found"
    message = "Workflow run not found."


class GraphInvalid(ApiError):
    status = 400
    code = "invalid_graph"


class AppNotFound(NotFound):
    code = "app_not_found"
    message = "App not found."


class AppKeyNotFound(NotFound):
    code = "key_not_found"
    message = "App key not found."


class BindingNotFound(NotFound):
    code = "binding_not_found"
    message = "No credential is bound to this app for that provider."
