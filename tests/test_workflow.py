"""A workflow's key: the name its traces and the learned router's artifact know it by."""

from __future__ import annotations

import pytest

from podium.routing.registry import TemplateRegistry
from podium.routing.templates import register_templates
from podium.workflow import Workflow, parse_workflow_key, workflow_key


def test_a_key_names_the_template_and_the_workers_it_was_given() -> None:
    key = workflow_key("program", ["qwen2.5-coder-1.5b", "python"])
    assert key == "program(qwen2.5-coder-1.5b,python)"
    assert parse_workflow_key(key) == ("program", ["qwen2.5-coder-1.5b", "python"])


@pytest.mark.parametrize(
    "name", ["gpt-4o", "llama3:8b", "org/model-v1.5", "program()", "Program(a)", "program(a"]
)
def test_a_worker_name_is_never_read_as_a_key(name: str) -> None:
    assert parse_workflow_key(name) is None


def test_only_a_templated_workflow_of_several_calls_has_a_key() -> None:
    templates = TemplateRegistry()
    register_templates(templates)
    built = templates.build("cascade", ["cheap", "strong"], {})
    assert built.key == "cascade(cheap,strong)"
    # built with options, its name and workers no longer say what it does
    assert templates.build("cascade", ["cheap", "strong"], {"verify": False}).key is None
    assert templates.build("single", ["cheap"], {}).key is None
    assert Workflow.single("cheap").key is None
