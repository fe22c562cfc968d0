"""Workflow graphs: validation (each problem named against its node), scheduling, inputs and
conditions."""

import copy
import dataclasses
import random

import pytest

from workflows.graph import (
    MAX_ISSUES,
    Edge,
    GraphError,
    GraphIssue,
    GraphWalk,
    IfElseNode,
    InputError,
    LlmNode,
    evaluate_condition,
    parse_graph,
    validate_inputs,
)

PROVIDERS = {"openai": None, "anthropic": ["claude-3-5-haiku-latest"], "azure_openai": None}


def start(*variables, node_id="start"):
    variables = variables or ({"name": "text", "type": "paragraph"},)
    return {"id": node_id, "type": "start", "variables": list(variables)}


def llm(node_id, text="{{ start.text }}", **fields):
    node = {
        "id": node_id,
        "type": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "text": "Be brief."}, {"role": "user", "text": text}],
    }
    return {**node, **fields}


def template(node_id, text):
    return {"id": node_id, "type": "template", "template": text}


def if_else(node_id, *conditions, logical_operator="and"):
    conditions = conditions or ({"variable": "start.text", "operator": "is_not_empty"},)
    return {
        "id": node_id,
        "type": "if_else",
        "conditions": list(conditions),
        "logical_operator": logical_operator,
    }


def end(node_id="end", **outputs):
    return {
        "id": node_id,
        "type": "end",
        "outputs": [{"name": name, "value_selector": sel} for name, sel in outputs.items()],
    }


def edge(source, target, handle=None):
    data = {"source": source, "target": target}
    if handle is not None:
        data["source_handle"] = handle
    return data


def chain(*node_ids):
    return [edge(a, b) for a, b in zip(node_ids, node_ids[1:], strict=False)]


def base():
    """start -> summarize -> end"""
    return {
        "nodes": [start(), llm("summarize"), end(summary="summarize.text")],
        "edges": chain("start", "summarize", "end"),
    }


def branching():
    """start -> check -(true)-> yes -> merge -> end
    -(false)-> no -> merge"""
    return {
        "nodes": [
            start(),
            if_else("check"),
            llm("yes"),
            llm("no"),
            template("merge", "{{ yes.text if yes is defined else no.text }}"),
            end(answer="merge.output"),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "yes", "true"),
            edge("check", "no", "false"),
            *chain("yes", "merge", "end"),
            edge("no", "merge"),
        ],
    }


def issues(data, providers=PROVIDERS) -> list[str]:
    with pytest.raises(GraphError) as caught:
        parse_graph(data, providers=providers)
    assert all(isinstance(issue, GraphIssue) for issue in caught.value.issues)
    return [str(issue) for issue in caught.value.issues]


def node(data, node_id):
    return next(n for n in data["nodes"] if n["id"] == node_id)


def mutate(build, change):
    def make():
        data = build()
        change(data)
        return data

    return make


def set_in(node_id, **fields):
    def change(data):
        node(data, node_id).update(fields)

    return change


def drop_node(node_id):
    def change(data):
        data["nodes"] = [n for n in data["nodes"] if n["id"] != node_id]
        data["edges"] = [e for e in data["edges"] if node_id not in (e["source"], e["target"])]

    return change


def add(*nodes, edges=()):
    def change(data):
        data["nodes"].extend(nodes)
        data["edges"].extend(edges)

    return change


def set_parameters(**parameters):
    return set_in("summarize", parameters=parameters)


def set_variable(**fields):
    return set_in("start", variables=[{"name": "text", "type": "paragraph", **fields}])


def set_condition(**fields):
    def change(data):
        condition = node(data, "check")["conditions"][0]
        condition.update(fields)
        for key in [k for k, v in condition.items() if v is None]:
            del condition[key]

    return change


def set_edges(*edges):
    def change(data):
        data["edges"] = list(edges)

    return change


INVALID = [
    ("missing start", mutate(base, drop_node("start")), "the graph needs a start node"),
    (
        "two starts",
        mutate(base, add(start(node_id="start_two"), edges=[edge("start_two", "summarize")])),
        'node "start_two": is a second start node (the first is "start")',
    ),
    ("missing end", mutate(base, drop_node("end")), "the graph needs at least one end node"),
    (
        "cycle",
        mutate(
            base, add(llm("again"), edges=[edge("summarize", "again"), edge("again", "summarize")])
        ),
        'node "summarize": is part of a cycle with "again"',
    ),
    (
        "self loop",
        mutate(base, add(edges=[edge("summarize", "summarize")])),
        'node "summarize": has an edge to itself',
    ),
    (
        "unreachable node",
        mutate(base, add(llm("orphan", "hi"), edges=[edge("orphan", "end")])),
        'node "orphan": cannot be reached from the start node',
    ),
    (
        "dead end",
        mutate(base, add(llm("stray"), edges=[edge("start", "stray")])),
        'node "stray": has no path to an end node',
    ),
    (
        "unknown type",
        mutate(base, add({"id": "fetch", "type": "http"})),
        'node "fetch": type must be one of start, llm, template, if_else, end, not "http"',
    ),
    (
        "type missing",
        mutate(base, add({"id": "fetch"})),
        'node "fetch": type is required',
    ),
    (
        "unknown provider",
        mutate(base, set_in("summarize", provider="foo")),
        'node "summarize": unknown provider "foo" (known: anthropic, azure_openai, openai)',
    ),
    (
        "model not served by the provider",
        mutate(base, set_in("summarize", provider="anthropic", model="gpt-4o")),
        'node "summarize": unknown model "gpt-4o" for provider "anthropic" '
        "(known: claude-3-5-haiku-latest)",
    ),
    (
        "model missing",
        mutate(base, set_in("summarize", model="")),
        'node "summarize": model must not be empty',
    ),
    (
        "model too long",
        mutate(base, set_in("summarize", model="m" * 201)),
        'node "summarize": model must be at most 200 characters',
    ),
    (
        "temperature out of range",
        mutate(base, set_parameters(temperature=2.5)),
        'node "summarize": parameters.temperature must be between 0 and 2',
    ),
    (
        "max_tokens zero",
        mutate(base, set_parameters(max_tokens=0)),
        'node "summarize": parameters.max_tokens must be between 1 and 100000',
    ),
    (
        "max_tokens not an integer",
        mutate(base, set_parameters(max_tokens=12.5)),
        'node "summarize": parameters.max_tokens must be an integer, not a number',
    ),
    (
        "max_tokens boolean",
        mutate(base, set_parameters(max_tokens=True)),
        'node "summarize": parameters.max_tokens must be an integer, not a boolean',
    ),
    (
        "top_p out of range",
        mutate(base, set_parameters(top_p=-0.1)),
        'node "summarize": parameters.top_p must be between 0 and 1',
    ),
    (
        "temperature not a number",
        mutate(base, set_parameters(temperature="hot")),
        'node "summarize": parameters.temperature must be a number, not a string',
    ),
    (
        "too many stop sequences",
        mutate(base, set_parameters(stop=["a", "b", "c", "d", "e"])),
        'node "summarize": parameters.stop must have at most 4 items',
    ),
    (
        "empty stop sequence",
        mutate(base, set_parameters(stop=[""])),
        'node "summarize": parameters.stop must hold non-empty strings',
    ),
    (
        "unknown parameter",
        mutate(base, set_parameters(seed=1)),
        'node "summarize": parameters has unknown field "seed"',
    ),
    (
        "parameters not an object",
        mutate(base, set_in("summarize", parameters=[1])),
        'node "summarize": parameters must be an object, not a list',
    ),
    (
        "no messages",
        mutate(base, set_in("summarize", messages=[])),
        'node "summarize": messages must not be empty',
    ),
    (
        "bad role",
        mutate(base, set_in("summarize", messages=[{"role": "tool", "text": "x"}])),
        'node "summarize": messages[0].role must be one of system, user, assistant, not "tool"',
    ),
    (
        "message not an object",
        mutate(base, set_in("summarize", messages=["hello"])),
        'node "summarize": messages[0] must be an object, not a string',
    ),
    (
        "message too long",
        mutate(base, set_in("summarize", messages=[{"role": "user", "text": "x" * 20_001}])),
        'node "summarize": messages[0].text must be at most 20000 characters',
    ),
    (
        "bad template syntax",
        mutate(base, set_in("summarize", messages=[{"role": "user", "text": "a\n{{ start.text"}])),
        'node "summarize": messages[0].text has a template error: line 2: unexpected end of template',
    ),
    (
        "unknown filter",
        mutate(
            base, set_in("summarize", messages=[{"role": "user", "text": "{{ start.text|shout }}"}])
        ),
        "node \"summarize\": messages[0].text has a template error: line 1: No filter named 'shout'",
    ),
    (
        "include",
        mutate(base, set_in("summarize", messages=[{"role": "user", "text": "{% include 'x' %}"}])),
        'node "summarize": messages[0].text has a template error: line 1: {% include %} is not supported',
    ),
    (
        "reference to an unknown variable",
        mutate(base, set_in("summarize", messages=[{"role": "user", "text": "{{ start.txt }}"}])),
        'node "summarize": messages[0].text references "start.txt", '
        'but node "start" has no output "txt" (outputs: text)',
    ),
    (
        "reference to an unknown node",
        mutate(base, set_in("summarize", messages=[{"role": "user", "text": "{{ nope.text }}"}])),
        'node "summarize": messages[0].text references "nope.text", but there is no node "nope"',
    ),
    (
        "bare name that is no node",
        mutate(base, set_in("summarize", messages=[{"role": "user", "text": "{{ topic }}"}])),
        'node "summarize": messages[0].text references "topic", but there is no node "topic"',
    ),
    (
        "reference to its own output",
        mutate(
            base, set_in("summarize", messages=[{"role": "user", "text": "{{ summarize.text }}"}])
        ),
        'node "summarize": messages[0].text references "summarize.text", '
        "but a node cannot read its own outputs",
    ),
    (
        "reference to a node downstream",
        mutate(base, add(template("after", "{{ start.text }}"), edges=[])),
        'node "after": cannot be reached from the start node',
    ),
    (
        "reference to a sibling on another branch",
        mutate(branching, set_in("no", messages=[{"role": "user", "text": "{{ yes.text }}"}])),
        'node "no": messages[0].text references "yes.text", but node "yes" is not upstream of this node',
    ),
    (
        "template too long",
        mutate(base, add(template("t", "x" * 20_001))),
        'node "t": template must be at most 20000 characters',
    ),
    (
        "if_else missing a handle",
        mutate(branching, drop_node("no")),
        'node "check": needs an edge for its "false" branch',
    ),
    (
        "if_else edge without a handle",
        mutate(branching, add(edges=[edge("check", "merge")])),
        'node "check": edges[6] needs a source_handle, "true" or "false"',
    ),
    (
        "handle on a non-if_else edge",
        mutate(base, set_edges(edge("start", "summarize", "true"), edge("summarize", "end"))),
        'node "start": edges[0] has a source_handle but only if_else edges do',
    ),
    (
        "unknown handle",
        mutate(branching, add(edges=[edge("check", "merge", "maybe")])),
        'edges[6].source_handle must be one of true, false, not "maybe"',
    ),
    (
        "edge out of an end node",
        mutate(base, add(llm("later"), edges=[edge("end", "later")])),
        'node "end": is an end node, so no edge may leave it',
    ),
    (
        "edge into the start node",
        mutate(base, add(edges=[edge("summarize", "start")])),
        'node "start": is a start node, so no edge may lead into it',
    ),
    (
        "duplicate id",
        mutate(base, add(llm("summarize"))),
        'node "summarize": nodes[3] repeats the id of another node',
    ),
    (
        "duplicate edge",
        mutate(base, add(edges=[edge("start", "summarize")])),
        'node "start": edges[2] repeats an edge to "summarize"',
    ),
    (
        "edge to an unknown node",
        mutate(base, add(edges=[edge("summarize", "ghost")])),
        'node "summarize": edges[2] leads to unknown node "ghost"',
    ),
    (
        "edge from an unknown node",
        mutate(base, add(edges=[edge("ghost", "summarize")])),
        'edges[2] starts at unknown node "ghost"',
    ),
    (
        "edge not an object",
        mutate(base, add(edges=["start->end"])),
        "edges[2] must be an object, not a string",
    ),
    (
        "id with capitals",
        mutate(base, add({"id": "Summarize", "type": "template", "template": ""})),
        'nodes[3].id is not valid: "Summarize"',
    ),
    (
        "id missing",
        mutate(base, add({"type": "template", "template": ""})),
        "nodes[3].id is required",
    ),
    (
        "reserved id",
        mutate(
            base, add(template("range", "x"), edges=[edge("start", "range"), edge("range", "end")])
        ),
        'node "range": id is reserved for templates; choose another id',
    ),
    (
        "unknown node field",
        mutate(base, set_in("summarize", paramters={})),
        'node "summarize": unknown field "paramters"',
    ),
    (
        "unknown graph field",
        mutate(base, lambda data: data.update(viewport={})),
        'unknown field "viewport"',
    ),
    (
        "title not a string",
        mutate(base, set_in("summarize", title=3)),
        'node "summarize": title must be a string, not a number',
    ),
    (
        "title too long",
        mutate(base, set_in("summarize", title="t" * 201)),
        'node "summarize": title must be at most 200 characters',
    ),
    (
        "nodes not a list",
        mutate(base, lambda data: data.update(nodes={"start": {}})),
        "nodes must be a list, not an object",
    ),
    ("edges missing", mutate(base, lambda data: data.pop("edges")), "edges is required"),
    (
        "node not an object",
        mutate(base, add("start")),
        "nodes[3] must be an object, not a string",
    ),
    (
        "variable name not an identifier",
        mutate(base, set_in("start", variables=[{"name": "1st", "type": "string"}])),
        'node "start": variables[0].name is not valid: "1st"',
    ),
    (
        "duplicate variable",
        mutate(base, set_in("start", variables=[{"name": "text", "type": "string"}] * 2)),
        'node "start": variables[1].name repeats the variable name "text"',
    ),
    (
        "unknown variable type",
        mutate(base, set_variable(type="file")),
        'node "start": variables[0].type must be one of string, paragraph, number, boolean, select',
    ),
    (
        "select without options",
        mutate(base, set_variable(type="select")),
        'node "start": variables[0].options is required',
    ),
    (
        "select with empty options",
        mutate(base, set_variable(type="select", options=[])),
        'node "start": variables[0].options must not be empty',
    ),
    (
        "select with a repeated option",
        mutate(base, set_variable(type="select", options=["a", "a"])),
        'node "start": variables[0].options must not repeat an option',
    ),
    (
        "select default not an option",
        mutate(base, set_variable(type="select", options=["en", "fr"], default="de")),
        'node "start": variables[0].default must be one of: en, fr',
    ),
    (
        "options on a string",
        mutate(base, set_variable(type="string", options=["a"])),
        'node "start": variables[0].options only applies to select, not string',
    ),
    (
        "max_length on a number",
        mutate(base, set_variable(type="number", max_length=3)),
        'node "start": variables[0].max_length only applies to string and paragraph, not number',
    ),
    (
        "max_length zero",
        mutate(base, set_variable(max_length=0)),
        'node "start": variables[0].max_length must be between 1 and 100000',
    ),
    (
        "default longer than the string cap",
        mutate(base, set_variable(type="string", default="x" * 49)),
        'node "start": variables[0].default must be at most 48 characters',
    ),
    (
        "number default a string",
        mutate(base, set_variable(type="number", default="5")),
        'node "start": variables[0].default must be a number',
    ),
    (
        "boolean default a string",
        mutate(base, set_variable(type="boolean", default="yes")),
        'node "start": variables[0].default must be true or false',
    ),
    (
        "required not a boolean",
        mutate(base, set_variable(required="no")),
        'node "start": variables[0].required must be true or false, not a string',
    ),
    (
        "condition selector without a variable",
        mutate(branching, set_condition(variable="start")),
        'node "check": conditions[0].variable is not valid: "start"',
    ),
    (
        "unknown operator",
        mutate(branching, set_condition(operator="matches", value="x")),
        'node "check": conditions[0].operator must be one of equals',
    ),
    (
        "numeric operator with a word",
        mutate(branching, set_condition(operator="gt", value="ten")),
        'node "check": conditions[0].value must be a number for gt',
    ),
    (
        "equals without a value",
        mutate(branching, set_condition(operator="equals")),
        'node "check": conditions[0].value is required for equals',
    ),
    (
        "contains with a number",
        mutate(branching, set_condition(operator="contains", value=3)),
        'node "check": conditions[0].value must be a string for contains',
    ),
    (
        "condition on an unknown output",
        mutate(branching, set_condition(variable="start.txt")),
        'node "check": conditions[0].variable references "start.txt", '
        'but node "start" has no output "txt" (outputs: text)',
    ),
    (
        "condition on a downstream node",
        mutate(branching, set_condition(variable="merge.output")),
        'node "check": conditions[0].variable references "merge.output", '
        'but node "merge" is not upstream of this node',
    ),
    (
        "no conditions",
        mutate(branching, set_in("check", conditions=[])),
        'node "check": conditions must not be empty',
    ),
    (
        "bad logical operator",
        mutate(branching, set_in("check", logical_operator="xor")),
        'node "check": logical_operator must be one of and, or, not "xor"',
    ),
    (
        "end output on an unknown variable",
        mutate(
            base, set_in("end", outputs=[{"name": "summary", "value_selector": "summarize.txt"}])
        ),
        'node "end": outputs[0].value_selector references "summarize.txt", '
        'but node "summarize" has no output "txt" (outputs: text)',
    ),
    (
        "end output with a bad selector",
        mutate(base, set_in("end", outputs=[{"name": "summary", "value_selector": "summarize"}])),
        'node "end": outputs[0].value_selector is not valid: "summarize"',
    ),
    (
        "end outputs repeating a name",
        mutate(base, set_in("end", outputs=[{"name": "a", "value_selector": "start.text"}] * 2)),
        'node "end": outputs[1].name repeats the output name "a"',
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_graph_is_reported_against_its_node(build, expected):
    found = issues(build())

    assert any(issue.startswith(expected) for issue in found), found


def test_valid_graphs_used_as_bases_parse():
    for build in (base, branching):
        parse_graph(build(), providers=PROVIDERS)


@pytest.mark.parametrize("data", [None, [], "graph", 3, {"nodes": None}, {"nodes": [], "edges": 4}])
def test_a_graph_that_is_not_an_object_of_lists_is_refused(data):
    assert issues(data)


def test_every_issue_is_collected_not_only_the_first():
    data = base()
    node(data, "summarize").update(provider="foo", parameters={"temperature": 9})
    data["nodes"].append(llm("stray"))
    data["edges"].append(edge("start", "stray"))

    found = issues(data)

    assert (
        'node "summarize": unknown provider "foo" (known: anthropic, azure_openai, openai)' in found
    )
    assert 'node "summarize": parameters.temperature must be between 0 and 2' in found
    assert 'node "stray": has no path to an end node' in found


def test_the_error_message_joins_issues_naming_their_nodes():
    data = base()
    node(data, "summarize")["provider"] = "foo"

    with pytest.raises(GraphError) as caught:
        parse_graph(data, providers=PROVIDERS)

    assert str(caught.value).startswith('node "summarize": unknown provider "foo"')
    assert caught.value.issues[0] == GraphIssue("summarize", caught.value.issues[0].message)


def test_a_node_with_a_bad_field_does_not_make_its_neighbours_unreachable():
    data = base()
    node(data, "summarize")["provider"] = "foo"

    assert issues(data) == [
        'node "summarize": unknown provider "foo" (known: anthropic, azure_openai, openai)'
    ]


def test_issues_are_capped():
    data = base()
    data["nodes"] += [{"id": f"n{i}", "type": "mystery"} for i in range(150)]

    found = issues(data)

    assert len(found) == MAX_ISSUES + 1
    assert found[-1] == "… and 100 more issues"


@pytest.mark.parametrize(
    ("nodes", "edges", "expected"),
    [
        (10_000, 0, "nodes must have at most 200 items"),
        (3, 5_000, "edges must have at most 1000 items"),
    ],
)
def test_huge_graphs_are_refused_before_being_read(nodes, edges, expected):
    data = {"nodes": [start()] * nodes, "edges": [edge("start", "end")] * edges}

    assert issues(data) == [expected]


def test_the_largest_graph_allowed_parses():
    middle = [template(f"t{i}", f"{{{{ t{i - 1}.output }}}}" if i else "x") for i in range(198)]
    ids = ["start", *(n["id"] for n in middle), "end"]
    data = {"nodes": [start(), *middle, end(out="t197.output")], "edges": chain(*ids)}

    graph = parse_graph(data, providers=PROVIDERS)

    assert graph.topological_order() == ids


def test_lone_surrogates_do_not_reach_the_message():
    data = base()
    node(data, "summarize")["provider"] = "\ud800"

    message = str(issues(data))

    message.encode("utf-8")


JUNK = [None, True, -1, 0, 1.5, float("nan"), "", "x" * 70_000, "{{", [], [None], {}, {"x": 1}]


def test_any_mangled_graph_raises_graph_error_or_parses():
    # Replace random parts of valid graphs with junk: nothing but GraphError may come out.
    rng = random.Random(1234)
    for _ in range(600):
        data = rng.choice([base, branching])()
        for _ in range(rng.randint(1, 3)):
            target = data
            path = []
            while isinstance(target, dict | list) and target and rng.random() < 0.8:
                key = rng.choice(list(target) if isinstance(target, dict) else range(len(target)))
                path.append((target, key))
                target = target[key]
            if path:
                parent, key = path[-1]
                parent[key] = copy.deepcopy(rng.choice(JUNK))
        try:
            parse_graph(data, providers=PROVIDERS)
        except GraphError as exc:
            assert exc.issues


# --- the parsed Graph -------------------------------------------------------------------------


def test_graph_exposes_nodes_in_topological_order_and_providers():
    data = branching()
    node(data, "no").update(provider="anthropic", model="claude-3-5-haiku-latest")

    graph = parse_graph(data, providers=PROVIDERS)

    assert graph.topological_order() == ["start", "check", "yes", "no", "merge", "end"]
    assert graph.start.id == "start"
    assert [e.id for e in graph.ends] == ["end"]
    assert graph.providers_used() == {"openai", "anthropic"}
    assert [n.id for n in graph.llm_nodes()] == ["yes", "no"]
    assert all(isinstance(n, LlmNode) for n in graph.llm_nodes())
    assert isinstance(graph.nodes["check"], IfElseNode)
    assert Edge("check", "yes", "true") in graph.edges
    assert graph.incoming("merge") == (Edge("yes", "merge"), Edge("no", "merge"))


def test_topological_order_follows_edges_not_the_json_order():
    data = base()
    data["nodes"].reverse()

    graph = parse_graph(data, providers=PROVIDERS)

    assert graph.topological_order() == ["start", "summarize", "end"]


def test_a_provider_without_a_model_list_accepts_any_model():
    data = base()
    node(data, "summarize").update(provider="azure_openai", model="my-deployment")

    graph = parse_graph(data, providers=PROVIDERS)

    assert graph.nodes["summarize"].model == "my-deployment"


def test_graph_is_immutable():
    graph = parse_graph(base(), providers=PROVIDERS)

    with pytest.raises(TypeError):
        graph.nodes["other"] = graph.start
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.start = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.nodes["summarize"].model = "gpt-4o"
    with pytest.raises(TypeError):
        graph.nodes["summarize"].parameters["temperature"] = 1


def test_to_dict_fills_defaults_and_parses_back_to_itself():
    data = branching()
    node(data, "yes")["parameters"] = {"temperature": 0.5, "stop": ["END"]}
    del node(data, "check")["logical_operator"]

    graph = parse_graph(data, providers=PROVIDERS)
    dumped = graph.to_dict()

    assert node(dumped, "check")["logical_operator"] == "and"
    assert node(dumped, "start")["variables"] == [
        {"name": "text", "type": "paragraph", "required": True}
    ]
    assert node(dumped, "yes")["parameters"] == {"temperature": 0.5, "stop": ["END"]}
    assert parse_graph(dumped, providers=PROVIDERS).to_dict() == dumped


def test_a_guarded_reference_across_branches_is_valid():
    graph = parse_graph(branching(), providers=PROVIDERS)

    assert graph.nodes["merge"].template == "{{ yes.text if yes is defined else no.text }}"


def test_template_locals_are_not_references():
    data = base()
    text = "{% for start in [1] %}{{ start.anything }}{% endfor %}{% set x = {'a': 1} %}{{ x.a }}"
    node(data, "summarize")["messages"][1]["text"] = text

    parse_graph(data, providers=PROVIDERS)


# --- GraphWalk -------------------------------------------------------------------------------


def run(graph, branches=None):
    """Walk a graph to the end, completing ready nodes in order; returns the nodes run."""
    branches = branches or {}
    walk = GraphWalk(graph)
    ran = []
    while not walk.done():
        ready = walk.ready()
        assert ready, "the walk is stuck"
        node_id = ready[0]
        walk.start(node_id)
        walk.complete(node_id, branch=branches.get(node_id))
        ran.append(node_id)
    return ran, walk.skipped()


def test_walk_a_linear_graph():
    graph = parse_graph(base(), providers=PROVIDERS)
    walk = GraphWalk(graph)

    assert walk.ready() == ["start"]
    walk.start("start")
    assert walk.ready() == []
    walk.complete("start")
    assert walk.ready() == ["summarize"]
    walk.complete("summarize")
    walk.complete("end")
    assert walk.done()
    assert walk.skipped() == set()


@pytest.mark.parametrize(
    ("branch", "ran", "skipped"),
    [
        (True, ["start", "check", "yes", "merge", "end"], {"no"}),
        (False, ["start", "check", "no", "merge", "end"], {"yes"}),
    ],
)
def test_walk_a_branch_that_merges_again(branch, ran, skipped):
    graph = parse_graph(branching(), providers=PROVIDERS)

    assert run(graph, {"check": branch}) == (ran, skipped)


def nested():
    """start -> outer -(true)-> inner -(true)-> a -> join -> end
                    -(false)-> b -> join
    -(false)-> c -> join"""
    return {
        "nodes": [
            start(),
            if_else("outer"),
            if_else("inner"),
            llm("a"),
            llm("b"),
            llm("c"),
            template("join", "done"),
            end(),
        ],
        "edges": [
            edge("start", "outer"),
            edge("outer", "inner", "true"),
            edge("outer", "c", "false"),
            edge("inner", "a", "true"),
            edge("inner", "b", "false"),
            edge("a", "join"),
            edge("b", "join"),
            edge("c", "join"),
            edge("join", "end"),
        ],
    }


@pytest.mark.parametrize(
    ("branches", "ran", "skipped"),
    [
        (
            {"outer": True, "inner": True},
            ["start", "outer", "inner", "a", "join", "end"],
            {"b", "c"},
        ),
        (
            {"outer": True, "inner": False},
            ["start", "outer", "inner", "b", "join", "end"],
            {"a", "c"},
        ),
        ({"outer": False}, ["start", "outer", "c", "join", "end"], {"inner", "a", "b"}),
    ],
)
def test_walk_nested_branches(branches, ran, skipped):
    graph = parse_graph(nested(), providers=PROVIDERS)

    assert run(graph, branches) == (ran, skipped)


def test_a_skipped_branch_can_reach_an_end_of_its_own():
    data = {
        "nodes": [start(), if_else("check"), llm("yes"), end("end_yes"), llm("no"), end("end_no")],
        "edges": [
            edge("start", "check"),
            edge("check", "yes", "true"),
            edge("check", "no", "false"),
            edge("yes", "end_yes"),
            edge("no", "end_no"),
        ],
    }
    graph = parse_graph(data, providers=PROVIDERS)

    assert run(graph, {"check": False}) == (["start", "check", "no", "end_no"], {"yes", "end_yes"})


def test_both_handles_to_one_node_run_it_either_way():
    data = base()
    data["nodes"].insert(1, if_else("check"))
    data["edges"] = [
        edge("start", "check"),
        edge("check", "summarize", "true"),
        edge("check", "summarize", "false"),
        edge("summarize", "end"),
    ]
    graph = parse_graph(data, providers=PROVIDERS)

    assert run(graph, {"check": False}) == (["start", "check", "summarize", "end"], set())


def test_parallel_nodes_are_ready_together():
    data = {
        "nodes": [start(), llm("one"), llm("two"), end(a="one.text", b="two.text")],
        "edges": [
            edge("start", "one"),
            edge("start", "two"),
            edge("one", "end"),
            edge("two", "end"),
        ],
    }
    walk = GraphWalk(parse_graph(data, providers=PROVIDERS))
    walk.complete("start")

    assert walk.ready() == ["one", "two"]
    walk.start("one")
    assert walk.ready() == ["two"]
    walk.complete("two")
    assert walk.ready() == []
    walk.complete("one")
    assert walk.ready() == ["end"]


def test_replaying_completions_rebuilds_a_walk():
    graph = parse_graph(branching(), providers=PROVIDERS)
    walk = GraphWalk(graph)
    for node_id, branch in [("start", None), ("check", False), ("no", None)]:
        walk.complete(node_id, branch=branch)

    assert walk.ready() == ["merge"]
    assert walk.skipped() == {"yes"}
    assert not walk.done()


@pytest.mark.parametrize(
    ("node_id", "branch", "message"),
    [
        ("summarize", None, 'node "summarize" is not ready to run'),
        ("ghost", None, 'there is no node "ghost"'),
        ("start", True, 'node "start": branch is required for if_else nodes only'),
    ],
)
def test_walk_refuses_out_of_order_calls(node_id, branch, message):
    walk = GraphWalk(parse_graph(base(), providers=PROVIDERS))

    with pytest.raises(ValueError, match=message):
        walk.complete(node_id, branch=branch)


def test_an_if_else_must_say_which_branch():
    walk = GraphWalk(parse_graph(branching(), providers=PROVIDERS))
    walk.complete("start")

    with pytest.raises(ValueError, match="branch is required"):
        walk.complete("check")


def test_a_completed_node_cannot_complete_again():
    walk = GraphWalk(parse_graph(base(), providers=PROVIDERS))
    walk.complete("start")

    with pytest.raises(ValueError, match="not ready"):
        walk.complete("start")
    with pytest.raises(ValueError, match="not ready"):
        walk.start("start")


# --- validate_inputs -------------------------------------------------------------------------


def graph_with(*variables):
    return parse_graph(
        {"nodes": [start(*variables), end()], "edges": [edge("start", "end")]},
        providers=PROVIDERS,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ({"type": "string"}, "hello", "hello"),
        ({"type": "paragraph"}, "line\nline", "line\nline"),
        ({"type": "number"}, 3, 3),
        ({"type": "number"}, 2.5, 2.5),
        ({"type": "number"}, 0, 0),
        ({"type": "number"}, "42", 42),
        ({"type": "number"}, " -1.5 ", -1.5),
        ({"type": "number"}, "1e3", 1000.0),
        ({"type": "boolean"}, False, False),
        ({"type": "boolean"}, True, True),
        ({"type": "select", "options": ["en", "fr"]}, "fr", "fr"),
        ({"type": "string"}, "x" * 48, "x" * 48),
        ({"type": "paragraph"}, "x" * 10_000, "x" * 10_000),
        ({"type": "string", "max_length": 100}, "x" * 100, "x" * 100),
    ],
)
def test_valid_inputs_are_returned_coerced(variable, value, expected):
    graph = graph_with({"name": "v", **variable})

    cleaned = validate_inputs(graph, {"v": value})

    assert cleaned == {"v": expected}
    assert type(cleaned["v"]) is type(expected)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ({"type": "string"}, 5, "inputs.v must be a string"),
        ({"type": "string"}, "x" * 49, "inputs.v must be at most 48 characters"),
        ({"type": "paragraph"}, "x" * 10_001, "inputs.v must be at most 10000 characters"),
        (
            {"type": "paragraph", "max_length": 20},
            "x" * 21,
            "inputs.v must be at most 20 characters",
        ),
        ({"type": "number"}, "ten", "inputs.v must be a number"),
        ({"type": "number"}, True, "inputs.v must be a number"),
        ({"type": "number"}, "nan", "inputs.v must be a number"),
        ({"type": "number"}, "1e999", "inputs.v must be a number"),
        ({"type": "number"}, "0x10", "inputs.v must be a number"),
        ({"type": "boolean"}, "true", "inputs.v must be true or false"),
        ({"type": "boolean"}, 1, "inputs.v must be true or false"),
        ({"type": "select", "options": ["en", "fr"]}, "de", "inputs.v must be one of: en, fr"),
        ({"type": "select", "options": ["en", "fr"]}, ["en"], "inputs.v must be a string"),
    ],
)
def test_invalid_inputs_name_the_variable(variable, value, message):
    graph = graph_with({"name": "v", **variable})

    with pytest.raises(InputError) as caught:
        validate_inputs(graph, {"v": value})

    assert caught.value.variable == "v"
    assert str(caught.value) == message


@pytest.mark.parametrize("inputs", [{}, {"text": None}, {"text": ""}])
def test_a_required_input_must_be_present_and_non_empty(inputs):
    graph = graph_with({"name": "text", "type": "paragraph"})

    with pytest.raises(InputError, match=r"^inputs.text is required$"):
        validate_inputs(graph, inputs)


def test_defaults_fill_missing_inputs_and_optional_ones_are_empty():
    graph = graph_with(
        {"name": "lang", "type": "select", "options": ["en", "fr"], "default": "en"},
        {"name": "count", "type": "number", "default": 3, "required": False},
        {"name": "note", "type": "string", "required": False},
        {"name": "size", "type": "number", "required": False},
        {"name": "flag", "type": "boolean", "required": False},
    )

    cleaned = validate_inputs(graph, {"note": "", "extra": "ignored"})

    assert cleaned == {"lang": "en", "count": 3, "note": "", "size": None, "flag": None}


@pytest.mark.parametrize("inputs", [None, [], "text"])
def test_inputs_must_be_an_object(inputs):
    with pytest.raises(InputError) as caught:
        validate_inputs(graph_with(), inputs)

    assert caught.value.variable is None
    assert str(caught.value).startswith("inputs must be an object")


# --- evaluate_condition ----------------------------------------------------------------------


def condition_node(*conditions, logical_operator="and"):
    data = branching()
    node(data, "check").update(conditions=list(conditions), logical_operator=logical_operator)
    return parse_graph(data, providers=PROVIDERS).nodes["check"]


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("equals", "fr", "fr", True),
        ("equals", "fr", "en", False),
        ("equals", "", None, True),
        ("equals", 3, "3", True),
        ("equals", "3", 3.0, True),
        ("equals", True, True, True),
        ("equals", "true", True, True),
        ("equals", False, "yes", False),
        ("not_equals", "fr", "en", True),
        ("not_equals", "fr", "fr", False),
        ("contains", "ell", "hello", True),
        ("contains", "xyz", "hello", False),
        ("contains", "b", ["a", "b"], True),
        ("contains", "x", None, False),
        ("not_contains", "xyz", "hello", True),
        ("not_contains", "ell", "hello", False),
        ("starts_with", "he", "hello", True),
        ("starts_with", "lo", "hello", False),
        ("ends_with", "lo", "hello", True),
        ("ends_with", "he", "hello", False),
        ("is_empty", None, "", True),
        ("is_empty", None, None, True),
        ("is_empty", None, [], True),
        ("is_empty", None, "x", False),
        ("is_empty", None, 0, False),
        ("is_not_empty", None, "x", True),
        ("is_not_empty", None, None, False),
        ("gt", 10, 11, True),
        ("gt", 10, 10, False),
        ("gt", "10", "11.5", True),
        ("gt", 10, "9", False),
        ("gt", 10, "eleven", False),
        ("gt", 10, None, False),
        ("lt", 10, 9, True),
        ("lt", 10, "10", False),
        ("gte", 10, 10, True),
        ("gte", 10, "9.99", False),
        ("lte", "2.5", 2.5, True),
        ("lte", 2, 3, False),
        ("gt", 0, True, False),
    ],
)
def test_each_operator(operator, value, actual, expected):
    check = condition_node({"variable": "start.text", "operator": operator, "value": value})

    assert evaluate_condition(check, {"start": {"text": actual}}) is expected


def test_a_missing_variable_counts_as_empty():
    check = condition_node({"variable": "start.text", "operator": "is_empty"})

    assert evaluate_condition(check, {}) is True
    assert evaluate_condition(check, {"start": {}}) is True


@pytest.mark.parametrize(
    ("logical_operator", "text", "expected"),
    [("and", "hello", True), ("and", "help", False), ("or", "help", True), ("or", "nope", False)],
)
def test_logical_operators_combine_conditions(logical_operator, text, expected):
    check = condition_node(
        {"variable": "start.text", "operator": "starts_with", "value": "he"},
        {"variable": "start.text", "operator": "ends_with", "value": "lo"},
        logical_operator=logical_operator,
    )

    assert evaluate_condition(check, {"start": {"text": text}}) is expected
