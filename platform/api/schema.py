"""OpenAPI descriptions of Keyflow's token authentication (loaded by api.apps)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ManagementTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.ManagementTokenAuthentication"
    name = "managementToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A tenant management token, kf-…"}


class AppTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.AppTokenAuthentication"
    name = "appToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An app's Service API key, app-…"}


ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": "Dify's error body, for every 4xx of the APIs.",
    "properties": {
        "status": {"type": "integer", "description": "The HTTP status, repeated."},
        "code": {"type": "string", "description": "What went wrong, e.g. invalid_param."},
        "message": {"type": "string"},
    },
    "required": ["status", "code", "message"],
    "additionalProperties": False,
}


def error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation documents its 4xx answers as
    Dify's error body (validation, authentication, permission, not found, size and depth
    limits, rate limit all share it)."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            operation.setdefault("responses", {}).setdefault("4XX", {
                "description": "Dify's error body; 429 carries Retry-After.",
                "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"},
                }},
            })
    return result
