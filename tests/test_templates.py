"""Templates (contract section 11): `{{name}}` placeholders in prompt, system_prompt and id, filled
from `vars` (top-level defaults, per-item overrides, an items_file's declared columns per row);
every placeholder is checked before anything is sent; the filled prompt is what is sent,
fingerprinted and recorded."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.job import Job
from batchbanana.plan.templates import Template, parse_template
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, RecordingServer, results
from tests.relay import Relay

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
JOBS = Path(__file__).resolve().parent.parent / "jobs"


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as caught:
        load_job(path)
    problems = caught.value.problems
    assert all("\n" not in problem for problem in problems)
    return problems


def _prompts(job: Job) -> dict[str, str]:
    return {item.id: item.prompt for item in job.items}


# --- the template language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "filled"),
    [
        pytest.param("a {{thing}}", "a fox", id="plain"),
        pytest.param("a {{ thing }}!", "a fox!", id="spaces-inside"),
        pytest.param("{{thing}}{{thing}}", "foxfox", id="twice"),
        pytest.param(r"a \{{thing}}", "a {{thing}}", id="escaped"),
        pytest.param("json {} and }} stay", "json {} and }} stay", id="other-braces"),
        pytest.param("no placeholder at all", "no placeholder at all", id="none"),
    ],
)
def test_a_template_fills_placeholders_and_keeps_the_rest(text: str, filled: str) -> None:
    """`{{ name }}` is replaced by its value, `\\{{` is a literal `{{`, other text stays."""
    template = parse_template(text)
    assert isinstance(template, Template)
    assert template.fill({"thing": "fox"}) == filled


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a {{ thing", id="unclosed"),
        pytest.param("a {{two words}}", id="space-in-name"),
        pytest.param("a {{}}", id="empty"),
        pytest.param("a {{1st}}", id="digit-first"),
    ],
)
def test_a_double_brace_that_opens_no_placeholder_is_a_problem_with_a_hint(text: str) -> None:
    """A `{{` that is not a placeholder is never sent as written: the user is told how to write
    a placeholder or a literal `{{`."""
    problem = parse_template(text)
    assert isinstance(problem, str)
    assert "opens no placeholder" in problem and "HINT:" in problem and "\\{{" in problem


# --- filling from vars -------------------------------------------------------------------------


def test_item_vars_override_the_top_level_defaults_in_prompt_system_prompt_and_id(
    tmp_path: Path,
) -> None:
    """Top-level `vars` are defaults; an item's own values win; null in an item keeps the
    default; the top-level system prompt is filled per item; ids are filled id-safe."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        vars: {animal: fox, place: snow, n: 3}
        system_prompt: "Photograph {{animal}}s."
        items:
          - id: "{{animal}}-{{place}}"
            prompt: "{{n}} {{animal}}s in {{ place }}"
          - id: "{{animal}}-{{place}}"
            prompt: "{{n}} {{animal}}s in {{ place }}"
            vars: {animal: snow owl, place: null}
            system_prompt: "Own: {{animal}}"
        """,
    )
    job = load_job(path)
    assert [(item.id, item.prompt, item.system_prompt) for item in job.items] == [
        ("fox-snow", "3 foxs in snow", "Photograph foxs."),
        ("snow-owl-snow", "3 snow owls in snow", "Own: snow owl"),
    ]


def test_an_unknown_placeholder_is_a_problem_at_its_line_listing_the_known_variables(
    tmp_path: Path,
) -> None:
    """Each unknown placeholder is one line at file:line naming the field, with a hint that
    lists the variables there are (and guesses a misspelling); all are reported together."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        vars: {colour: red, size: big}
        items:
          - id: a
            prompt: "a {{colour}} fox"
          - id: b
            prompt: "a {{color}} fox"
          - id: "c-{{shape}}"
            prompt: "a fox"
        """,
    )
    problems = _problems(path)
    assert problems == [
        f"{path}:7: item 'b': prompt: {{{{color}}}} is not a variable; HINT: did you mean"
        " colour? known variables: colour, size; declare it under `vars` (e.g. vars:"
        " {color: ...}), or write \\{{ for a literal '{{'",
        f"{path}:9: item 'c-{{{{shape}}}}': id: {{{{shape}}}} is not a variable; HINT: known"
        " variables: colour, size; declare it under `vars` (e.g. vars: {shape: ...}), or write"
        " \\{{ for a literal '{{'",
    ]


def test_an_undeclared_placeholder_exits_2_through_the_cli_and_sends_nothing(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """`run` with an unknown placeholder exits 2 at file:line before any request."""
    manifest = write_manifest(
        [{"id": "ok", "prompt": "fine"}, {"id": "x", "prompt": "a {{mystery}} fox"}],
        endpoint=simulator.url,
        vars={"known": "v"},
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert f"{manifest}:" in result.stderr
    assert "item 'x': prompt: {{mystery}} is not a variable; HINT: known variables: known" in (
        result.stderr
    )
    assert simulator.stats()["requests"] == 0


def test_a_variable_without_a_value_is_a_problem_where_it_is_used(tmp_path: Path) -> None:
    """`vars: {x: null}` declares x without a default: an item that uses it must give it."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        vars: {product: null}
        items:
          - prompt: "a {{product}}"
            vars: {product: mug}
          - prompt: "a {{product}}"
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:7: items[1]: prompt: {{{{product}}}} has no value")
    assert "HINT:" in problem and "product column" in problem


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("{flag: yes}", "vars.flag: True: quote it", id="boolean"),
        pytest.param("{many: [a, b]}", "vars.many: a variable's value is a text", id="list"),
        pytest.param("{2x: a}", "vars.2x: '2x' is not a variable name", id="bad-name"),
        pytest.param("{prompt: a}", "vars: 'prompt' is an item field", id="reserved"),
    ],
)
def test_a_bad_variable_is_a_problem_at_its_line(
    tmp_path: Path, written: str, expected: str
) -> None:
    """Variables are named like identifiers (not like item fields) and hold a text or number."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        items:
          - id: a
            prompt: p
            vars: {written}
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:6: item 'a': {expected}")


def test_a_broken_top_level_system_prompt_is_reported_once(tmp_path: Path) -> None:
    """A stray `{{` in the top-level system prompt is one problem at its line, not one per item."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        system_prompt: "be {{ kind"
        items:
          - prompt: one
          - prompt: two
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: system_prompt: '{{{{ kind': '{{{{' opens no")


def test_a_filled_id_must_still_be_a_valid_id_and_a_long_one_is_cut_with_a_hash(
    tmp_path: Path,
) -> None:
    """Values are written id-safe; an id that cannot start with a letter or digit is refused;
    one past 128 characters is cut and ends with a hash of the whole, so it stays unique."""
    long_a, long_b = "a" * 130, "a" * 129 + "b"
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        items:
          - id: "{{{{v}}}}"
            prompt: p1
            vars: {{v: "!bad"}}
          - id: "{{{{v}}}}"
            prompt: p2
            vars: {{v: "-x"}}
          - id: "{{{{v}}}}"
            prompt: p3
            vars: {{v: {long_a}}}
          - id: "{{{{v}}}}"
            prompt: p4
            vars: {{v: {long_b}}}
            repeat: 2
        """,
    )
    job = load_job(path)
    ids = [item.id for item in job.items]
    assert ids[:2] == ["bad", "x"]
    assert all(len(item_id) <= 128 for item_id in ids) and len(set(ids)) == 5
    assert ids[2].startswith("a" * 100) and ids[3].endswith("-1") and ids[4].endswith("-2")
    path.write_text(path.read_text().replace('"!bad"', '"_under"'))
    (problem,) = _problems(path)
    assert "id: '_under' (filled in) is not a valid id" in problem


def test_the_filled_prompt_is_what_is_sent_recorded_and_fingerprinted(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """The request carries the filled prompt and system prompt; the ledger's spec records them;
    the fingerprint is that of the same prompt written out, so a template is no new work."""
    relay = Relay(recording_server, simulator)
    manifest = write_manifest(
        [{"id": "t", "prompt": "a {{animal}} at {{time}}", "vars": {"animal": "fox"}}],
        endpoint=recording_server.url,
        vars={"time": "dusk"},
        system_prompt="Style: {{time}}",
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    (body,) = relay.bodies
    assert body["contents"][0]["parts"][-1]["text"] == "a fox at dusk"
    assert body["systemInstruction"]["parts"][0]["text"] == "Style: dusk"
    (line,) = results(tmp_path / "out" / "ledger.jsonl")
    assert line["spec"]["prompt"] == "a fox at dusk"
    assert line["spec"]["system_prompt"] == "Style: dusk"
    written_out = write_manifest(
        [{"id": "t", "prompt": "a fox at dusk"}], name="plain.yaml", system_prompt="Style: dusk"
    )
    assert load_job(written_out).items[0].fingerprint == line["fingerprint"]


# --- items_file --------------------------------------------------------------------------------


def test_an_items_file_fills_placeholders_from_its_declared_columns_per_row(
    tmp_path: Path,
) -> None:
    """Columns named in the top-level `vars` fill each row's placeholders; an empty cell takes
    the default; the same works for a .jsonl file's keys."""
    (tmp_path / "rows.csv").write_text(
        "id,prompt,animal,place\n"
        "{{animal}}-1,a {{animal}} in {{place}},fox,snow\n"
        "{{animal}}-2,a {{animal}} in {{place}},owl,\n"
    )
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        vars: {animal: null, place: a forest}
        items_file: rows.csv
        """,
    )
    assert _prompts(load_job(path)) == {"fox-1": "a fox in snow", "owl-2": "a owl in a forest"}
    (tmp_path / "rows.jsonl").write_text(
        '{"prompt": "a {{animal}}", "animal": "cat", "id": "c"}\n'
        '{"prompt": "a {{animal}} in {{place}}", "vars": {"place": "rain"}, "animal": "dog",'
        ' "id": "d"}\n'
    )
    path.write_text(path.read_text().replace("rows.csv", "rows.jsonl"))
    assert _prompts(load_job(path)) == {"c": "a cat", "d": "a dog in rain"}


def test_an_undeclared_items_file_column_is_an_error_whose_hint_names_vars(
    tmp_path: Path,
) -> None:
    """A column that is neither an item field nor a declared variable stays an error, and its
    hint says how to declare it; a .jsonl key likewise."""
    (tmp_path / "rows.csv").write_text("prompt,animal\na {{animal}},fox\n")
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items_file: rows.csv
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith("rows.csv:1: unknown column(s) animal; known: ")
    assert "HINT:" in problem and "top-level `vars`" in problem and "{animal: null" in problem
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a {{animal}}", "animal": "fox"}\n')
    path.write_text(path.read_text().replace("rows.csv", "rows.jsonl"))
    (problem,) = _problems(path)
    assert problem.startswith("rows.jsonl:1: animal: unknown key")
    assert "top-level `vars`" in problem


def test_the_templates_example_job_runs_green_with_filled_prompts(cli: Cli, tmp_path: Path) -> None:
    """jobs/templates.yaml with its CSV runs on the simulator; each row's prompt, system prompt
    and id are filled from its cells, the item's vars and the top-level defaults."""
    shutil.copytree(JOBS, tmp_path / "jobs")
    result = cli("run", str(tmp_path / "jobs" / "templates.yaml"), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = results(tmp_path / "out" / "templates" / "ledger.jsonl")
    assert {line["outcome"] for line in lines} == {"ok"}
    prompts = {line["item"]: line["spec"]["prompt"] for line in lines}
    assert prompts["hero-espresso-cup"] == "a natural espresso cup, three-quarter view"
    assert prompts["mug-blue"] == "a blue mug on an oak table"
    assert prompts["teapot"] == "a cast-iron teapot pouring tea, steam rising"
    assert "a natural tumbler held in one hand" in prompts.values()
    systems = {line["item"]: line["spec"]["system_prompt"] for line in lines}
    assert "slate grey" in systems["hero-espresso-cup"] and "white" in systems["mug-blue"]


def test_a_top_level_variable_named_like_an_item_field_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    """An items_file column must mean one thing: a variable may not be called `seed`, say."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        vars:
          seed: 4
        items:
          - prompt: p
        """,
    )
    (problem,) = _problems(path)
    assert problem == f"{path}:4: vars.seed: 'seed' is an item field; name the variable differently"
