"""GET /v1/parameters: the app's input form in Dify's shape."""

from __future__ import annotations

from workflows.models import App

# Keyflow variable type -> Dify form control.
FORM_CONTROLS = {
    "string": "text-input",
    "paragraph": "paragraph",
    "number": "number",
    "select": "select",
    "boolean": "checkbox",
}


def start_variables(app: App) -> list[dict]:
    if app.mode == App.Mode.WORKFLOW:
        for node in (app.graph or {}).get("nodes", []):
            if isinstance(node, dict) and node.get("type") == "start":
                return [v for v in node.get("variables", []) if isinstance(v, dict)]
        return []
    return [v for v in (app.model_config or {}).get("variables", []) if isinstance(v, dict)]


def app_parameters(app: App) -> dict:
    form = []
    for variable in start_variables(app):
        control = FORM_CONTROLS.get(variable.get("type", "string"), "text-input")
        item = {
            "label": variable.get("label") or variable.get("name"),
            "variable": variable.get("name"),
            "required": bool(variable.get("required", True)),
            "default": variable.get("default", ""),
        }
        if control in ("text-input", "paragraph") and variable.get("max_length"):
            item["max_length"] = variable["max_length"]
        if control == "select":
            item["options"] = list(variable.get("options", []))
        form.append({control: item})
    config = app.model_config or {}
    return {
        "opening_statement": config.get("opening_statement", ""),
        "suggested_questions": config.get("suggested_questions", []),
        "suggested_questions_after_answer": {"enabled": False},
        "speech_to_text": {"enabled": False},
        "text_to_speech": {"enabled": False},
        "retriever_resource": {"enabled": False},
        "annotation_reply": {"enabled": False},
        "more_like_this": {"enabled": False},
        "user_input_form": form,
        "sensitive_word_avoidance": {"enabled": False},
        "file_upload": {"image": {"enabled": False}},
        "system_parameters": {
            "file_size_limit": 0,
            "image_file_size_limit": 0,
            "audio_file_size_limit": 0,
            "video_file_size_limit": 0,
            "workflow_file_upload_limit": 0,
        },
    }
