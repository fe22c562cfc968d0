"""Example workflow graphs, as stored in App.graph; the demo tenant is seeded with them.

They are plain JSON-like dicts shared by every importer: copy one (copy.deepcopy) before
changing it.
"""

from __future__ import annotations

SUMMARIZER = {
    "nodes": [
        {
            "id": "start",
            "type": "start",
            "title": "Text",
            "variables": [
                {
                    "name": "text",
                    "type": "paragraph",
                    "label": "Text to summarize",
                    "required": True,
                },
            ],
        },
        {
            "id": "summarize",
            "type": "llm",
            "title": "Summarize",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "messages": [
                {
                    "role": "system",
                    "text": "You summarize texts faithfully in a few sentences, in the language "
                    "of the text, without adding facts.",
                },
                {"role": "user", "text": "Summarize this text:\n\n{{ start.text }}"},
            ],
            "parameters": {"max_tokens": 256},
        },
        {
            "id": "end",
            "type": "end",
            "title": "Summary",
            "outputs": [{"name": "summary", "value_selector": "summarize.text"}],
        },
    ],
    "edges": [
        {"source": "start", "target": "summarize"},
        {"source": "summarize", "target": "end"},
    ],
}

# The two answer nodes sit on opposite branches, so exactly one of them runs; the compose
# node tests which (a skipped node's outputs are absent, see workflows.graph).
TRIAGE_TWO_PROVIDERS = {
    "nodes": [
        {
            "id": "start",
            "type": "start",
            "title": "Ticket",
            "variables": [
                {
                    "name": "ticket",
                    "type": "paragraph",
                    "label": "Support ticket",
                    "required": True,
                },
                {
                    "name": "language",
                    "type": "select",
                    "label": "Reply language",
                    "required": False,
                    "default": "en",
                    "options": ["en", "fr"],
                },
            ],
        },
        {
            "id": "is_french",
            "type": "if_else",
            "title": "French reply?",
            "conditions": [{"variable": "start.language", "operator": "equals", "value": "fr"}],
            "logical_operator": "and",
        },
        {
            "id": "answer_fr",
            "type": "llm",
            "title": "Answer in French",
            "provider": "anthropic",
            "model": "claude-3-5-haiku-latest",
            "messages": [
                {
                    "role": "system",
                    "text": "Tu es un agent du support client. Réponds au ticket en français, "
                    "poliment et en quelques phrases.",
                },
                {"role": "user", "text": "{{ start.ticket }}"},
            ],
            "parameters": {"max_tokens": 512, "temperature": 0.3},
        },
        {
            "id": "answer_en",
            "type": "llm",
            "title": "Answer in English",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "messages": [
                {
                    "role": "system",
                    "text": "You are a customer support agent. Answer the ticket in English, "
                    "politely and in a few sentences.",
                },
                {"role": "user", "text": "{{ start.ticket }}"},
            ],
            "parameters": {"max_tokens": 512, "temperature": 0.3},
        },
        {
            "id": "compose",
            "type": "template",
            "title": "Reply",
            "template": (
                "{{ answer_fr.text if answer_fr is defined else answer_en.text }}\n\n"
                "-- {{ 'Le support' if start.language == 'fr' else 'Support team' }}"
            ),
        },
        {
            "id": "end",
            "type": "end",
            "title": "Answer",
            "outputs": [{"name": "answer", "value_selector": "compose.output"}],
        },
    ],
    "edges": [
        {"source": "start", "target": "is_french"},
        {"source": "is_french", "target": "answer_fr", "source_handle": "true"},
        {"source": "is_french", "target": "answer_en", "source_handle": "false"},
        {"source": "answer_fr", "target": "compose"},
        {"source": "answer_en", "target": "compose"},
        {"source": "compose", "target": "end"},
    ],
}
