"""Configuration errors name the file, the field and why; nothing starts on a bad config."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.commands.workers import provider_problems
from podium.config import ConfigError, load_config, parse_config

WORKER = "{name: a, provider: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}"


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The error message loading ``text`` as podium.yaml produces."""
    path = tmp_path / "podium.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    message = str(caught.value)
    assert message.startswith(str(path)), message  # always names the file
    return message


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("workers: [{name: a, provider: openai\n  model: m", ["not valid YAML", "line"]),
        ("- a list\n- of things", ["top level must be a mapping"]),
        ("colour: blue", ["colour: Extra inputs are not permitted"]),
        (
            f"workers: [{WORKER[:-1]}, colour: red}}]",
            ["workers.0.colour: Extra inputs are not permitted"],
        ),
        (
            "workers: [{name: a, provider: openai, model: m, price: {input: cheap}}]",
            ["workers.0.price.input", "valid number"],
        ),
        ("server: {port: 99999}", ["server.port", "less than or equal to 65535"]),
        ("server: {port: eighty}", ["server.port", "valid integer"]),
        (
            "workers: [{name: a, provider: openai, model: m, capabilities: [telepathy]}]",
            ["workers.0.capabilities.0", "'tools'"],
        ),
        ("workers: [{name: 'a b', provider: openai, model: m}]", ["workers.0.name", "pattern"]),
        ("workers: [{name: a, model: m}]", ["workers.0.provider: Field required"]),
        (
            "workers: [{name: a, provider: openai, model: m, base_url: ftp://x}]",
            ["workers.0.base_url", "must start with http:// or https://"],
        ),
        (
            "workers: [{name: a, provider: openai, model: m, timeouts: {connect: 0}}]",
            ["workers.0.timeouts.connect", "greater than 0"],
        ),
        (f"workers: [{WORKER}, {WORKER}]", ["workers: names must be unique; repeated: a"]),
        (f"workers: [{WORKER}]\naliases: {{fast: ghost}}", ["aliases.fast", "'ghost'"]),
        (f"workers: [{WORKER}]\ndefault_worker: ghost", ["default_worker", "'ghost'"]),
        # A model name must mean one worker: resolution order used to pick one silently.
        (
            f"workers: [{WORKER[:-1]}, aliases: [b]}}, {WORKER.replace('a,', 'b,')}]",
            ["workers.a.aliases: 'b' already means worker 'b' (its name)"],
        ),
        (
            f"workers: [{WORKER[:-1]}, aliases: [fast]}}, {WORKER[:-1].replace('a,', 'b,')}, "
            "aliases: [fast]}]",
            ["workers.b.aliases: 'fast' already means worker 'a' (workers.a.aliases)"],
        ),
        (
            f"workers: [{WORKER}, {WORKER.replace('a,', 'b,')}]\naliases: {{b: a}}",
            ["aliases.b: 'b' already means worker 'b' (its name)"],
        ),
        ("workers: {name: a}", ["workers", "valid list"]),
        (
            f"workers: [{WORKER[:-1]}, capabilities: [documents], document_page_tokens: -1}}]",
            ["workers.0.document_page_tokens", "greater than or equal to 0"],
        ),
        # Only a worker that reads PDFs itself is sent their pages: the setting would do nothing.
        (
            f"workers: [{WORKER[:-1]}, document_page_tokens: 1500}}]",
            ["document_page_tokens: only a worker with the 'documents' capability"],
        ),
    ],
)
def test_errors_name_the_file_the_field_and_why(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    message = load(tmp_path, text)
    for needle in needles:
        assert needle in message, message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    message = load(tmp_path, "server: {port: -1}\nstore: {batch_size: 0}\nbogus: 1")
    for field in ("server.port", "store.batch_size", "bogus"):
        assert field in message


def test_a_literal_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = load(
        tmp_path,
        "workers: [{name: a, provider: openai, model: m, api_key: sk-live-0123456789abcdef}]",
    )
    assert "workers.0.api_key" in message
    assert "sk-live" not in message


def test_environment_overrides_are_validated_too(tmp_path: Path) -> None:
    message = load(tmp_path, f"workers: [{WORKER}]", env={"PODIUM_PORT": "not-a-port"})
    assert "server.port" in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nowhere.yaml", env={})
    assert "nowhere.yaml: no such configuration file" in str(caught.value)


def test_no_workers_gives_the_embedded_pool() -> None:
    config = parse_config({})
    assert [worker.name for worker in config.workers] == ["smollm2-135m", "minilm-static"]
    assert config.default_worker == "smollm2-135m"
    assert config.workers[0].provider == "local"
    assert (config.workers[1].provider, config.workers[1].role) == ("static", "embed")


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ("{path: /models/x.gguf}", "options.path needs options.sha256"),
        ("{model: no-such-model}", "unknown local model 'no-such-model'"),
        ("{}", "give exactly one of options.model"),
        ("{model: smollm2-135m, n_ctx: 10}", "options.n_ctx"),
    ],
)
def test_local_workers_must_be_pinned(tmp_path: Path, options: str, needle: str) -> None:
    path = tmp_path / "podium.yaml"
    path.write_text(f"workers: [{{name: a, provider: local, model: m, options: {options}}}]")
    config = load_config(path, env={})  # the shape is fine; the provider finds the problem
    [problem] = provider_problems(config, str(path))
    assert problem.startswith(f"{path}: workers.0 (a): ")
    assert needle in problem


def test_serve_refuses_a_bad_config_with_one_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "podium.yaml"
    path.write_text("workers: [{name: a, provider: local, model: m, options: {path: /x.gguf}}]")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 1
    assert "options.path needs options.sha256" in result.output
    assert "Traceback" not in result.output

    path.write_text("workers: [{name: a, provider: openai}]")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 1 and "workers.0.model: Field required" in result.output

    # Found only as the app is built (rules, routers, contracts, policy): it was a traceback
    # from the server process, after "serving on ...".
    path.write_text(
        f"workers: [{WORKER}]\nrouting: {{rules: [{{name: r, match: {{regex: ['(']}}, "
        "worker: a}]}"
    )
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 1
    assert "rule 'r': regular expression '(' does not compile" in result.output
    assert "Traceback" not in result.output and "serving on" not in result.output


def test_the_vendor_example_builds_a_gateway(tmp_path: Path) -> None:
    from podium.app import create_podium

    example = Path(__file__).resolve().parent.parent / "examples" / "vendors.yaml"
    config = load_config(example, env={"PODIUM_DATA_DIR": str(tmp_path)})
    podium = create_podium(config)
    roles = {worker.name: worker.config.role for worker in podium.pool}
    assert roles["gpt-5"] == "answer" and roles["text-embedding-3-small"] == "embed"
    assert podium.pool.get("gpt-5") is not None


def test_a_pdf_page_costs_a_worker_that_reads_pdfs_its_own_figure_or_geminis() -> None:
    reading = {"capabilities": ["streaming", "documents"]}
    workers = [
        {"name": "text", "provider": "openai", "model": "m"},
        {"name": "native", "provider": "gemini", "model": "m", **reading},
        {"name": "claude", "provider": "anthropic", "model": "m", **reading},
    ]
    workers[2]["document_page_tokens"] = 1500
    text, native, claude = parse_config({"workers": workers}).workers
    assert (text.page_image_tokens, native.page_image_tokens, claude.page_image_tokens) == (
        0,  # sent the text alone
        258,  # Gemini's documented figure: the default
        1500,
    )
