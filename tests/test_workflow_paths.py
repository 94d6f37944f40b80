"""Path expressions and templates: what a workflow step reads of earlier steps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.workflows.paths import PathError, check, parse, render, resolve, resolve_params

CONTEXT = {
    "init_params": {"topic": "tides", "n": 3},
    "env": {"REGION": "eu"},
    "split": {
        "inputs": {"text": "a\nb"},
        "outputs": {"items": [{"text": "a", "index": 0}, {"text": "b", "index": 1}], "count": 2},
    },
    "write": {"inputs": {"prompt": "go"}, "outputs": {"files": [{"path": "out.txt", "size": 3}]}},
}


def test_it_reads_the_spec_examples():
    assert resolve("init_params.topic", CONTEXT) == "tides"
    assert resolve("write.outputs.files[0].path", CONTEXT) == "out.txt"
    assert resolve("write.inputs.prompt", CONTEXT) == "go"
    assert resolve("split.outputs.items[*].text", CONTEXT) == ["a", "b"]
    assert resolve("split.outputs.items[-1].index", CONTEXT) == 1
    assert resolve("env.REGION", CONTEXT) == "eu"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("split.outputs.items[5].text", "index 5 is out of range"),
        ("split.outputs.count[0]", "needs a list"),
        ("split.outputs.nothing", "no 'nothing'"),
        ("missing.outputs.x", "nothing called 'missing'"),
        ("init_params.topic.deeper", "cannot read 'deeper' from str"),
    ],
)
def test_it_says_where_a_path_breaks(path, message):
    with pytest.raises(PathError, match=message):
        resolve(path, CONTEXT)


@pytest.mark.parametrize("bad", ["", "a..b", "a.[0]", "a.b[x]", "a b", "1abc.x", "a.b]"])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(PathError):
        parse(bad)


def test_the_static_check_refuses_forward_references_and_unknown_roots():
    check("split.outputs.items[*].text", ["split"], ["split", "later"])
    with pytest.raises(PathError, match="forward reference"):
        check("later.outputs.x", ["split"], ["split", "later"])
    with pytest.raises(PathError, match="not init_params, env or an earlier step"):
        check("nowhere.outputs.x", ["split"], ["split"])
    with pytest.raises(PathError, match="`inputs` or `outputs`"):
        check("split.result", ["split"], ["split"])
    with pytest.raises(PathError, match="one variable"):
        check("env.A.B", [], [])


def test_templates_fill_text_and_json():
    text = render("About {{ init_params.topic }}: {{split.outputs.items[*].text}} ({{ init_params.n }})", CONTEXT)
    assert text == 'About tides: ["a", "b"] (3)'


def test_a_path_param_wins_over_the_literal():
    params = {"prompt": "literal", "prompt_path": "write.inputs.prompt", "title": "{{ init_params.topic }}", "k": 1}
    assert resolve_params(params, CONTEXT) == {"prompt": "go", "title": "tides", "k": 1}


# Property tests: build a JSON value, walk a random route through it, and resolve the path that route spells.

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
JSON = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4), st.dictionaries(NAMES, inner, min_size=1, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def value_and_route(draw):
    root = draw(st.dictionaries(NAMES, JSON, min_size=1, max_size=3))
    text, value = "root", root
    text_parts = ["root"]
    while True:
        if isinstance(value, dict) and value and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(value)))
            text_parts.append("." + key)
            value = value[key]
        elif isinstance(value, list) and value and draw(st.booleans()):
            index = draw(st.integers(-len(value), len(value) - 1))
            text_parts.append(f"[{index}]")
            value = value[index]
        else:
            break
    text = "".join(text_parts)
    return {"root": root}, text, value


@given(value_and_route())
def test_resolving_a_route_returns_what_it_leads_to(case):
    context, path, expected = case
    assert resolve(path, context) == expected


@given(st.lists(st.dictionaries(NAMES, LEAVES, min_size=1, max_size=3), min_size=1, max_size=6), NAMES)
def test_every_item_maps_the_rest_of_the_path(items, key):
    context = {"root": {"items": [{**item, key: i} for i, item in enumerate(items)]}}
    assert resolve(f"root.items[*].{key}", context) == list(range(len(items)))


@given(JSON)
def test_a_template_of_a_whole_value_renders_it_as_text(value):
    from runs.workflows.paths import as_text

    assert render("{{ root.v }}", {"root": {"v": value}}) == as_text(value)


@given(st.text(max_size=30))
def test_arbitrary_text_either_parses_or_is_refused_cleanly(text):
    try:
        path = parse(text)
    except PathError:
        return
    assert path.parts and isinstance(path.parts[0], str)
