"""Apps, their runs and each node's execution (tenant schema)."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q

from credentials.fields import StrictEncryptedTextField
from credentials.models import Credential


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class App(models.Model):
    class Mode(models.TextChoices):
        WORKFLOW = "workflow", "Workflow"
        CHAT = "chat", "Chat"
        COMPLETION = "completion", "Completion"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="", max_length=2000)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.WORKFLOW)
    # The published workflow graph (validated by workflows.graph.parse_graph before saving).
    graph = models.JSONField(default=dict, blank=True)
    # Chat and completion apps: provider, model, prompt templates, parameters.
    model_config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    # Signs webhook deliveries (HMAC-SHA256); encrypted at rest like provider keys.
    webhook_secret = StrictEncryptedTextField(default=new_webhook_secret)
    # A deleted app stops serving but keeps its runs, which usage and billing reports need.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.mode})"


class AppCredentialBinding(models.Model):
    """The credential an app uses for a provider, before the tenant default."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="credential_bindings")
    provider = models.CharField(max_length=64)
    credential = models.ForeignKey(Credential, on_delete=models.CASCADE, related_name="app_bindings")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "provider"], name="app_binding_one_per_provider")
        ]

    def __str__(self) -> str:
        return f"{self.app.name}: {self.provider} → {self.credential_id}"


class WorkflowRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.STOPPED)

    class ResponseMode(models.TextChoices):
        BLOCKING = "blocking"
        STREAMING = "streaming"
        ASYNC = "async"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="runs")
    # The graph that ran (a copy: the app may be edited while runs are in flight).
    graph = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    response_mode = models.CharField(max_length=16, choices=ResponseMode.choices)
    end_user = models.CharField(max_length=255)
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    # Which credential serves each provider: {provider: {source, credential_id, fingerprint}}.
    # Ids and fingerprints only, never a secret.
    credential_plan = models.JSONField(default=dict)
    api_token_id = models.UUIDField(null=True, blank=True)
    # Chat runs belong to a conversation; chat and completion runs produce a Message.
    conversation = models.ForeignKey(
        "Conversation", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    # Where the final body is POSTed when the run ends (signed with the app's webhook secret).
    callback_url = models.URLField(max_length=2048, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    total_price = models.DecimalField(max_digits=18, decimal_places=7, default=0)
    currency = models.CharField(max_length=8, default="USD")
    total_steps = models.PositiveIntegerField(default=0)
    elapsed_time = models.FloatField(default=0)
    # Seconds spent waiting on providers, to report the platform's own share of a run.
    provider_time = models.FloatField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=255, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    stop_requested = models.BooleanField(default=False)
    deadline_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["app", "api_token_id", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="run_idempotency_key_unique",
            )
        ]
        indexes = [
            models.Index(fields=["app", "-created_at"]),
            models.Index(fields=["status", "deadline_at"]),
            models.Index(fields=["end_user"]),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class NodeExecution(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        STOPPED = "stopped"

    class CredentialSource(models.TextChoices):
        OVERRIDE = "override"
        APP = "app"
        DEFAULT = "default"
        INLINE = "inline"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="node_executions")
    node_id = models.CharField(max_length=64)
    node_type = models.CharField(max_length=16)
    title = models.CharField(max_length=200, blank=True, default="")
    index = models.PositiveIntegerField()
    predecessor_node_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    inputs = models.JSONField(default=dict)
    process_data = models.JSONField(default=dict)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    elapsed_time = models.FloatField(default=0)
    provider = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    credential_id = models.UUIDField(null=True, blank=True, db_index=True)
    credential_source = models.CharField(
        max_length=16, choices=CredentialSource.choices, blank=True, default=""
    )
    credential_fingerprint = models.CharField(max_length=64, blank=True, default="")
    provider_attempts = models.PositiveSmallIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    total_price = models.DecimalField(max_digits=18, decimal_places=7, default=0)
    currency = models.CharField(max_length=8, default="USD")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id"], name="node_execution_once_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.status})"


class InlineCredential(models.Model):
    """A one-off key given with one run: encrypted, short-lived, destroyed when the run ends."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="inline_credentials")
    provider = models.CharField(max_length=64)
    secrets = StrictEncryptedTextField()
    config = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"inline {self.provider} key for run {self.run_id}"


class Conversation(models.Model):
    """A chat between one end user and a chat app."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="conversations")
    end_user = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True, default="")
    # The inputs of the first message; later turns reuse them (as Dify does).
    inputs = models.JSONField(default=dict)
    # Stored-credential overrides the conversation keeps, only when the first request asked
    # for it ({provider: credential id}); one-off keys are never remembered.
    remembered_overrides = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["app", "end_user", "-updated_at"])]

    def __str__(self) -> str:
        return self.name or f"conversation {self.id}"


class Message(models.Model):
    """One chat turn or completion: the query, the answer and who paid for it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="messages")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    run = models.OneToOneField(WorkflowRun, on_delete=models.CASCADE, related_name="message")
    end_user = models.CharField(max_length=255)
    query = models.TextField(blank=True, default="")
    inputs = models.JSONField(default=dict)
    answer = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, default="queued")
    error = models.TextField(blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    total_price = models.DecimalField(max_digits=18, decimal_places=7, default=0)
    currency = models.CharField(max_length=8, default="USD")
    latency = models.FloatField(default=0)
    provider = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    credential_id = models.UUIDField(null=True, blank=True, db_index=True)
    credential_source = models.CharField(max_length=16, blank=True, default="")
    credential_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"message {self.id}"
