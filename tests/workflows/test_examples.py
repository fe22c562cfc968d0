"""The example graphs the demo tenant is seeded with: they validate and run as described."""

import pytest

from workflows.examples import SUMMARIZER, TRIAGE_TWO_PROVIDERS
from workflows.graph import (
    GraphWalk,
    IfElseNode,
    LlmNode,
    evaluate_condition,
    parse_graph,
    validate_inputs,
)
from workflows.templating import TemplateRenderError, render

PROVIDERS = {"openai": None, "anthropic": None, "azure_openai": None}


def execute(graph, inputs):
    """Run a graph the way the executor does, with a fake LLM that answers "<node id> says".

    Returns (end outputs, the prompts each llm node received, skipped nodes)."""
    walk = GraphWalk(graph)
    variables = {}
    prompts = {}
    while not walk.done():
        node_id = walk.ready()[0]
        node = graph.nodes[node_id]
        walk.start(node_id)
        branch = None
        if node.type == "start":
            variables[node_id] = validate_inputs(graph, inputs)
        elif isinstance(node, LlmNode):
            prompts[node_id] = [(m.role, render(m.text, variables)) for m in node.messages]
            variables[node_id] = {"text": f"{node_id} says"}
        elif node.type == "template":
            variables[node_id] = {"output": render(node.template, variables)}
        elif isinstance(node, IfElseNode):
            branch = evaluate_condition(node, variables)
            variables[node_id] = {"result": branch}
        else:
            outputs = {o.name: variables[o.node_id][o.var] for o in node.outputs}
        walk.complete(node_id, branch=branch)
    return outputs, prompts, walk.skipped()


@pytest.mark.parametrize("example", [SUMMARIZER, TRIAGE_TWO_PROVIDERS])
def test_examples_parse_and_round_trip(example):
    graph = parse_graph(example, providers=PROVIDERS)

    assert graph.to_dict() == example


def test_summarizer_summarizes_the_text_with_openai():
    graph = parse_graph(SUMMARIZER, providers=PROVIDERS)

    outputs, prompts, skipped = execute(graph, {"text": "Keyflow runs workflows."})

    assert graph.providers_used() == {"openai"}
    assert graph.nodes["summarize"].model == "gpt-4o-mini"
    assert graph.nodes["summarize"].parameters == {"max_tokens": 256}
    assert [role for role, _ in prompts["summarize"]] == ["system", "user"]
    assert prompts["summarize"][1][1].endswith("Keyflow runs workflows.")
    assert outputs == {"summary": "summarize says"}
    assert skipped == set()


@pytest.mark.parametrize(
    ("language", "answered_by", "skipped", "signature"),
    [
        ("fr", "answer_fr", {"answer_en"}, "Le support"),
        ("en", "answer_en", {"answer_fr"}, "Support team"),
        (None, "answer_en", {"answer_fr"}, "Support team"),
    ],
)
def test_triage_answers_with_one_provider_per_language(language, answered_by, skipped, signature):
    graph = parse_graph(TRIAGE_TWO_PROVIDERS, providers=PROVIDERS)
    inputs = {"ticket": "My invoice is wrong."}
    if language:
        inputs["language"] = language

    outputs, prompts, skipped_nodes = execute(graph, inputs)

    assert list(prompts) == [answered_by]
    assert prompts[answered_by][1] == ("user", "My invoice is wrong.")
    assert outputs == {"answer": f"{answered_by} says\n\n-- {signature}"}
    assert skipped_nodes == skipped


def test_triage_uses_anthropic_for_french_and_openai_otherwise():
    graph = parse_graph(TRIAGE_TWO_PROVIDERS, providers=PROVIDERS)

    assert graph.providers_used() == {"anthropic", "openai"}
    assert graph.nodes["answer_fr"].provider == "anthropic"
    assert graph.nodes["answer_fr"].model == "claude-3-5-haiku-latest"
    assert graph.nodes["answer_en"].provider == "openai"


def test_the_compose_node_fails_clearly_if_neither_answer_ran():
    graph = parse_graph(TRIAGE_TWO_PROVIDERS, providers=PROVIDERS)

    with pytest.raises(TemplateRenderError, match="'answer_en' is undefined"):
        render(graph.nodes["compose"].template, {"start": {"language": "en"}})
