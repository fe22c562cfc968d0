"""The Service API (/v1) and management API (/api), the same on every host."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from budgets.apis import (
    BudgetDetailApi,
    BudgetEventListApi,
    BudgetListCreateApi,
    BudgetResetApi,
    BudgetSpendApi,
)
from credentials.apis import (
    CredentialDetailApi,
    CredentialDisableApi,
    CredentialEnableApi,
    CredentialListCreateApi,
    CredentialSetDefaultApi,
    CredentialValidateApi,
    ProviderListApi,
)
from tenants.apis import TenantDetailApi
from workflows.apis import (
    AppCredentialBindingApi,
    AppDetailApi,
    AppKeyListCreateApi,
    AppKeyRevokeApi,
    AppListCreateApi,
    AppWebhookSecretRotateApi,
    RunDetailApi,
    RunListApi,
    UsageApi,
)
from workflows.chat_api import (
    ChatMessagesApi,
    ChatStopApi,
    CompletionMessagesApi,
    CompletionStopApi,
    ConversationDeleteApi,
    ConversationRenameApi,
    ConversationsApi,
    MessagesApi,
)
from workflows.service_api import (
    AppInfoApi,
    AppParametersApi,
    WorkflowLogsApi,
    WorkflowRunApi,
    WorkflowRunDetailApi,
    WorkflowTaskStopApi,
)

urlpatterns = [
    # Service API (Dify-compatible)
    path("v1/workflows/run", WorkflowRunApi.as_view(), name="v1-workflows-run"),
    path("v1/workflows/run/<str:workflow_run_id>", WorkflowRunDetailApi.as_view()),
    path("v1/workflows/tasks/<str:task_id>/stop", WorkflowTaskStopApi.as_view()),
    path("v1/workflows/logs", WorkflowLogsApi.as_view()),
    path("v1/chat-messages", ChatMessagesApi.as_view()),
    path("v1/chat-messages/<str:task_id>/stop", ChatStopApi.as_view()),
    path("v1/completion-messages", CompletionMessagesApi.as_view()),
    path("v1/completion-messages/<str:task_id>/stop", CompletionStopApi.as_view()),
    path("v1/messages", MessagesApi.as_view()),
    path("v1/conversations", ConversationsApi.as_view()),
    path("v1/conversations/<str:conversation_id>", ConversationDeleteApi.as_view()),
    path("v1/conversations/<str:conversation_id>/name", ConversationRenameApi.as_view()),
    path("v1/info", AppInfoApi.as_view()),
    path("v1/parameters", AppParametersApi.as_view()),
    # Management API
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/tenant", TenantDetailApi.as_view(), name="api-tenant"),
    path("api/providers", ProviderListApi.as_view(), name="api-providers"),
    path("api/credentials", CredentialListCreateApi.as_view(), name="api-credentials"),
    path("api/credentials/<str:credential_id>", CredentialDetailApi.as_view(), name="api-credential"),
    path("api/credentials/<str:credential_id>/validate", CredentialValidateApi.as_view()),
    path("api/credentials/<str:credential_id>/set-default", CredentialSetDefaultApi.as_view()),
    path("api/credentials/<str:credential_id>/disable", CredentialDisableApi.as_view()),
    path("api/credentials/<str:credential_id>/enable", CredentialEnableApi.as_view()),
    # Management API: apps, their credentials and keys, runs, usage
    path("api/apps", AppListCreateApi.as_view(), name="api-apps"),
    path("api/apps/<str:app_id>", AppDetailApi.as_view(), name="api-app"),
    path("api/apps/<str:app_id>/credentials/<str:provider>", AppCredentialBindingApi.as_view()),
    path("api/apps/<str:app_id>/keys", AppKeyListCreateApi.as_view(), name="api-app-keys"),
    path("api/apps/<str:app_id>/webhook-secret/rotate", AppWebhookSecretRotateApi.as_view()),
    path("api/apps/<str:app_id>/keys/<str:key_id>/revoke", AppKeyRevokeApi.as_view()),
    path("api/runs", RunListApi.as_view(), name="api-runs"),
    path("api/runs/<str:run_id>", RunDetailApi.as_view(), name="api-run"),
    path("api/usage", UsageApi.as_view(), name="api-usage"),
    # Management API: budgets and rate limits of credentials and of app keys' end users
    path("api/budgets", BudgetListCreateApi.as_view(), name="api-budgets"),
    path("api/budgets/<str:budget_id>", BudgetDetailApi.as_view(), name="api-budget"),
    path("api/budgets/<str:budget_id>/spend", BudgetSpendApi.as_view(), name="api-budget-spend"),
    path("api/budgets/<str:budget_id>/reset", BudgetResetApi.as_view(), name="api-budget-reset"),
    path("api/budgets/<str:budget_id>/events", BudgetEventListApi.as_view(), name="api-budget-events"),
]
