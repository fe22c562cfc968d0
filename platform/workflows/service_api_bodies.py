"""OpenAPI descriptions of the Service API's Dify-shaped bodies.

Documentation only: `workflows.presenters` builds the bodies, these serializers describe
them for the schema (and the schema-driven fuzzing that checks every answer against it).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

# --- Shared pieces -----------------------------------------------------------------------


class PayingCredentialBody(serializers.Serializer):
    provider = serializers.CharField()
    source = serializers.CharField(help_text="override, app, default or inline")
    credential_id = serializers.UUIDField(allow_null=True, help_text="null for a one-off key")
    fingerprint = serializers.CharField(help_text="Prefix of the key's keyed hash.")


class RunUsageBody(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_price = serializers.CharField(help_text="Decimal, as a string")
    currency = serializers.CharField()
    latency = serializers.FloatField()


class RunMetadataBody(serializers.Serializer):
    credentials = PayingCredentialBody(many=True, help_text="Who paid, per provider.")
    usage = RunUsageBody()


class RunDataBody(serializers.Serializer):
    id = serializers.UUIDField()
    workflow_id = serializers.UUIDField()
    status = serializers.CharField()
    outputs = serializers.DictField()
    error = serializers.CharField(allow_null=True)
    elapsed_time = serializers.FloatField()
    total_tokens = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    created_at = serializers.IntegerField(help_text="Unix time")
    finished_at = serializers.IntegerField(allow_null=True, help_text="Unix time")
    metadata = RunMetadataBody()


class WebhookDeliveryBody(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    history = serializers.ListField(child=serializers.DictField())


class RunDetailMetadataBody(serializers.Serializer):
    credentials = PayingCredentialBody(many=True)
    webhook_deliveries = WebhookDeliveryBody(many=True, required=False,
                                             help_text="GET /v1/workflows/run/{id} only.")


class RunDetailBody(serializers.Serializer):
    id = serializers.UUIDField()
    workflow_id = serializers.UUIDField()
    status = serializers.CharField()
    inputs = serializers.CharField(help_text="The run's inputs, JSON-encoded (as Dify sends them).")
    outputs = serializers.DictField()
    error = serializers.CharField(allow_null=True)
    total_steps = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    created_at = serializers.IntegerField()
    finished_at = serializers.IntegerField(allow_null=True)
    elapsed_time = serializers.FloatField()
    metadata = RunDetailMetadataBody()


class ServerSentEventBody(serializers.Serializer):
    """One event of a `streaming` answer (`data: {json}` lines; `event: ping` keeps it alive)."""

    event = serializers.CharField(required=False, help_text="ping; the others name theirs in data")
    data = serializers.CharField(
        required=False,
        help_text="A JSON object: Dify's event (workflow_started, node_started, text_chunk, "
        "node_finished, workflow_finished, message, message_end, error…) with its fields.",
    )
    id = serializers.CharField(required=False)
    retry = serializers.IntegerField(required=False)


def sse_or(body, description: str) -> dict:
    """A 200 that is `body` as JSON (blocking) or a stream of Server-Sent Events."""
    return {
        (200, "application/json"): OpenApiResponse(body, description=description),
        (200, "text/event-stream"): OpenApiResponse(
            ServerSentEventBody, description="streaming: Server-Sent Events"
        ),
    }


# --- Workflows ---------------------------------------------------------------------------


class WorkflowRunBlockingBody(serializers.Serializer):
    workflow_run_id = serializers.UUIDField()
    task_id = serializers.UUIDField()
    data = RunDataBody()


class WorkflowRunQueuedBody(serializers.Serializer):
    workflow_run_id = serializers.UUIDField()
    task_id = serializers.UUIDField()
    status = serializers.CharField()
    data = RunDetailBody()


class WorkflowRunSummaryBody(serializers.Serializer):
    id = serializers.UUIDField()
    version = serializers.CharField()
    status = serializers.CharField()
    error = serializers.CharField(allow_null=True)
    elapsed_time = serializers.FloatField()
    total_tokens = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    created_at = serializers.IntegerField()
    finished_at = serializers.IntegerField(allow_null=True)


class EndUserBody(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    is_anonymous = serializers.BooleanField()
    session_id = serializers.CharField()


class WorkflowLogBody(serializers.Serializer):
    id = serializers.UUIDField()
    workflow_run = WorkflowRunSummaryBody()
    created_from = serializers.CharField()
    created_by_role = serializers.CharField()
    created_by_account = serializers.DictField(allow_null=True)
    created_by_end_user = EndUserBody()
    created_at = serializers.IntegerField()


class WorkflowLogsBody(serializers.Serializer):
    data = WorkflowLogBody(many=True)
    has_more = serializers.BooleanField()
    limit = serializers.IntegerField()
    page = serializers.IntegerField()
    total = serializers.IntegerField()


# --- Chat and completion messages --------------------------------------------------------


class MessageUsageBody(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    prompt_unit_price = serializers.CharField()
    prompt_price_unit = serializers.CharField()
    prompt_price = serializers.CharField()
    completion_tokens = serializers.IntegerField()
    completion_unit_price = serializers.CharField()
    completion_price_unit = serializers.CharField()
    completion_price = serializers.CharField()
    total_tokens = serializers.IntegerField()
    total_price = serializers.CharField()
    currency = serializers.CharField()
    latency = serializers.FloatField()


class MessageMetadataBody(serializers.Serializer):
    usage = MessageUsageBody()
    retriever_resources = serializers.ListField(child=serializers.DictField())
    credentials = PayingCredentialBody(many=True)


class MessageBlockingBody(serializers.Serializer):
    event = serializers.CharField()
    task_id = serializers.UUIDField()
    id = serializers.UUIDField()
    message_id = serializers.UUIDField()
    conversation_id = serializers.UUIDField(allow_null=True, required=False,
                                            help_text="Chat apps only.")
    mode = serializers.CharField()
    answer = serializers.CharField(allow_blank=True)
    metadata = MessageMetadataBody()
    created_at = serializers.IntegerField()


class MessageQueuedBody(serializers.Serializer):
    task_id = serializers.UUIDField()
    message_id = serializers.UUIDField()
    conversation_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField()


class ConversationBody(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField(allow_blank=True)
    inputs = serializers.DictField()
    status = serializers.CharField()
    introduction = serializers.CharField(allow_blank=True)
    created_at = serializers.IntegerField()
    updated_at = serializers.IntegerField()


class ConversationsBody(serializers.Serializer):
    limit = serializers.IntegerField()
    has_more = serializers.BooleanField()
    data = ConversationBody(many=True)


class CredentialsMetadataBody(serializers.Serializer):
    credentials = PayingCredentialBody(many=True)


class MessageHistoryBody(serializers.Serializer):
    id = serializers.UUIDField()
    conversation_id = serializers.UUIDField()
    parent_message_id = serializers.CharField(allow_null=True)
    inputs = serializers.DictField()
    query = serializers.CharField(allow_blank=True)
    answer = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    error = serializers.CharField(allow_null=True)
    message_files = serializers.ListField(child=serializers.DictField())
    feedback = serializers.DictField(allow_null=True)
    retriever_resources = serializers.ListField(child=serializers.DictField())
    agent_thoughts = serializers.ListField(child=serializers.DictField())
    created_at = serializers.IntegerField()
    metadata = CredentialsMetadataBody()


class MessagesBody(serializers.Serializer):
    limit = serializers.IntegerField()
    has_more = serializers.BooleanField()
    data = MessageHistoryBody(many=True)


# --- App metadata ------------------------------------------------------------------------


class AppInfoBody(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField())
    mode = serializers.CharField()
    author_name = serializers.CharField()


class FeatureToggleBody(serializers.Serializer):
    enabled = serializers.BooleanField()


class SystemParametersBody(serializers.Serializer):
    file_size_limit = serializers.IntegerField()
    image_file_size_limit = serializers.IntegerField()
    audio_file_size_limit = serializers.IntegerField()
    video_file_size_limit = serializers.IntegerField()
    workflow_file_upload_limit = serializers.IntegerField()


class AppParametersBody(serializers.Serializer):
    opening_statement = serializers.CharField(allow_blank=True)
    suggested_questions = serializers.ListField(child=serializers.CharField())
    suggested_questions_after_answer = FeatureToggleBody()
    speech_to_text = FeatureToggleBody()
    text_to_speech = FeatureToggleBody()
    retriever_resource = FeatureToggleBody()
    annotation_reply = FeatureToggleBody()
    more_like_this = FeatureToggleBody()
    user_input_form = serializers.ListField(
        child=serializers.DictField(),
        help_text="One object per input, keyed by its control (text-input, paragraph, number, "
        "select, checkbox).",
    )
    sensitive_word_avoidance = FeatureToggleBody()
    file_upload = serializers.DictField()
    system_parameters = SystemParametersBody()
