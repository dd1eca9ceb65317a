"""The ``recipe`` command: exit codes, no tracebacks, no heavy imports for validate/--help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def recipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{Path(__file__).parent}"}
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=120)


BAD = """\
recipe: bad
models: {gen: smollm2-135m-instruc}
stages:
  docs: {type: load.pydoc_topic}
  qa:
    type: generate.chat
    inputs: {records: doc}
    model: gen
    params: {template: "Q: {context}"}
"""


def test_validate_reports_three_planted_mistakes_exit_2(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = recipe("validate", str(p))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    err = r.stderr
    assert f"{p}:2:15: models.gen: unknown zoo model 'smollm2-135m-instruc' — did you mean " \
           "'smollm2-135m-instruct'?" in err
    assert f"{p}:4:16: stages.docs.type: unknown component 'load.pydoc_topic' — did you mean " \
           "'load.pydoc_topics'?" in err
    assert f"{p}:7:23: stages.qa.inputs.records: no stage named 'doc' — did you mean 'docs'?" in err
    assert "3 problems found" in err


TWO_FAULTS = """\
recipe: faults
models:
  g: {name: smollm2-135m-instruct, options: {concurency: 4}}
stages:
  docs: {type: load.pydoc_topics, params: {topics: [pass]}}
  qa:
    type: generate.chat
    inputs: {records: docs}
    model: g
    params: {template: "Q: {nope}"}
"""


def test_validate_reports_a_misspelled_backend_option_and_an_unknown_template_field(tmp_path):
    p = tmp_path / "faults.yaml"
    p.write_text(TWO_FAULTS)
    r = recipe("validate", str(p))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"{p}:3:46: models.g.options.concurency: unknown option 'concurency' — did you "
                               "mean 'concurrency'?")
    assert lines[1] == (f"{p}:10:24: stages.qa.params.template: the template reads field 'nope', which no record "
                        "on input 'records' has (stage 'docs' (load.pydoc_topics) gives context, id, idx, title)")
    assert lines[2] == "2 problems found; nothing was run."


def test_shipped_recipes_validate():
    recipes = sorted(str(p) for p in (REPO / "recipes").glob("*.yaml"))
    assert recipes
    r = recipe("validate", *recipes)
    assert r.returncode == 0, r.stderr + r.stdout


def test_validate_and_help_do_not_import_torch(tmp_path):
    code = ("import sys; from runner.cli import main; rc = main(['validate', %r]); "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'openai', 'datasets') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)").replace("%r", repr(str(REPO / "recipes" / "quickstart.yaml")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_show_and_components_list_builtins():
    r = recipe("components")
    assert r.returncode == 0
    for t in ("load.jsonl", "generate.chat", "judge.llm_score", "select.filter", "export.jsonl"):
        assert t in r.stdout
    r = recipe("show", "generate.chat")
    assert r.returncode == 0 and "max_new_tokens" in r.stdout and "256" in r.stdout
    r = recipe("show", "generate.chatt")
    assert r.returncode == 2 and "did you mean 'generate.chat'" in r.stderr


def test_run_with_bad_recipe_exits_2_before_anything(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = recipe("run", str(p), "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and not (tmp_path / "runs").exists()


def test_every_profile_of_every_shipped_recipe_validates_and_plans_offline(tmp_path):
    import yaml

    for path in sorted((REPO / "recipes").glob("*.yaml")):
        profiles = yaml.safe_load(path.read_text()).get("profiles") or {}
        for profile in profiles:
            r = recipe("validate", "--profile", profile, str(path))
            assert r.returncode == 0, (path.name, profile, r.stderr)
            r = recipe("plan", "--profile", profile, str(path), "--runs-dir", str(tmp_path))
            assert r.returncode == 0, (path.name, profile, r.stderr)
            assert "stage(s) to run" in r.stdout


def test_overrides_may_follow_options(tmp_path):
    path = str(REPO / "recipes" / "quickstart.yaml")
    r = recipe("plan", path, "--runs-dir", str(tmp_path), "stages.docs.params.topics=[pass]")
    assert r.returncode == 0, r.stderr
    assert "docs" in r.stdout and "│ 1 " in r.stdout  # one topic → one record out of docs
    r = recipe("plan", path, "--runs-dir", str(tmp_path), "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr
