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
