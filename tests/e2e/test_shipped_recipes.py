"""Every shipped recipe runs end to end with the tiny random model (profile `tiny`), then is fully cached."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from registry.jsonio import read_jsonl
from runner.load import load_recipe
from runner.session import run_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(autouse=True)
def zoo_home(tmp_path_factory, monkeypatch):
    """A zoo cache of the tests' own: published models register here, not in the user's zoo."""
    home = tmp_path_factory.getbasetemp() / "zoo-home"
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _run(name: str, tmp_path: Path):
    loaded = load_recipe(RECIPES / f"{name}.yaml", profile="tiny")
    run_recipe(loaded, tmp_path / "runs", progress=False, publish=True)
    root = tmp_path / "runs" / name
    latest = json.loads((root / "latest.json").read_text())["stages"]
    return loaded, root, {s: root / d for s, d in latest.items()}


# what a person must see in each shipped recipe's report.html without opening another file
REPORT_HTML = {
    "quickstart": ["score distribution"],
    "longcite": ["SFT: loss per step", "LongBench-Cite scores per answer"],
    "longalign": ["SFT: loss per step", "needle: mean score per depth and length", "LongBench-Chat scores"],
    "longreward": ["DPO: loss per step", "mean LongReward before and after training",
                   "LongReward scores per dimension (0–10)"],
    "gateau": ["SFT: loss per step", "needle: mean score per depth and length",
               "final score: selected against the rest"],
}


def _check_report_html(name: str, root: Path) -> None:
    page = (root / "report.html").read_text()
    assert len(page.encode()) < 3 * 2**20
    plots = re.findall(r'<img class="plot" alt="([^"]*)" src="data:image/svg\+xml;base64,', page)
    assert set(REPORT_HTML.get(name, [])) <= set(plots), plots
    if name == "longcite":  # a statement of the CoF data that links to a sentence of the numbered context
        viewer = page.split('id="stage-filtered"', 1)[1].split("</section>", 1)[0]
        target = re.search(r'data-links="\[\{&quot;target&quot;: &quot;(s\d+)&quot;', viewer).group(1)
        assert f'data-sid="{target}"' in viewer


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["quickstart", "longcite", "longalign", "longreward", "gateau", "selfrag"])
def test_recipe_runs_with_tiny_model_and_reruns_from_cache(name, tmp_path):
    loaded, root, dirs = _run(name, tmp_path)
    for stage in loaded.order:
        m = _manifest(dirs[stage])
        assert m["status"] == "done", (stage, m)
        assert (dirs[stage] / "records.jsonl").exists()
    report = (root / "report.md").read_text()
    assert all(f"| {s} |" in report for s in loaded.order)
    _check_report_html(name, root)
    assert (root / "recipe.lock.yaml").exists()
    before = {s: _manifest(d)["finished"] for s, d in dirs.items()}
    # second run: everything served from cache, nothing re-run
    _run(name, tmp_path)
    assert {s: _manifest(d)["finished"] for s, d in dirs.items()} == before
    if name == "longalign":
        assert (dirs["sft"] / "model" / "recipe_model.json").exists()
        # the model published to file:// is usable by name in the next recipe
        nxt = tmp_path / "next.yaml"
        nxt.write_text(
            "recipe: next\nmodels: {tuned: longalign-sft}\nstages:\n"
            "  docs: {type: load.pydoc_topics, params: {topics: [pass], max_chars: 200}}\n"
            "  ask: {type: generate.chat, inputs: {records: docs}, model: tuned,\n"
            "        params: {template: 'Summarise: {context}', max_new_tokens: 4}}\n")
        run_recipe(load_recipe(nxt), tmp_path / "runs", progress=False, publish=False)
        latest = json.loads((tmp_path / "runs" / "next" / "latest.json").read_text())["stages"]
        (answer,) = read_jsonl(tmp_path / "runs" / "next" / latest["ask"] / "records.jsonl")
        assert isinstance(answer["response"], str)
        assert "needle_heatmap.png" in report
        assert (dirs["needle_scores"] / "needle_heatmap.png").exists()
    if name == "longreward":
        assert (dirs["dpo"] / "model" / "recipe_model.json").exists()
        for r in read_jsonl(dirs["samples"] / "records.jsonl"):
            assert r["id"] == f"{r['id'].rsplit('-', 1)[0]}-{r['sample']}"
        for r in read_jsonl(dirs["scores"] / "records.jsonl"):
            assert r["scores"]["total"] == pytest.approx(sum(r["scores"][d] for d in (
                "helpfulness", "logicality", "faithfulness", "completeness")))
        for r in read_jsonl(dirs["pairs"] / "records.jsonl"):
            assert r["chosen_total"] >= r["rejected_total"] and r["prompt"][-1]["role"] == "user"
        assert "| dimension | before | after | change |" in report and "Win rate of after over before" in report
    if name == "longcite":
        assert (dirs["sft"] / "model" / "recipe_model.json").exists()
        for r in read_jsonl(dirs["filtered"] / "records.jsonl"):
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
            assert "[Document Start]\n<C0>" in r["messages"][0]["content"]
        for r in read_jsonl(dirs["decode"] / "records.jsonl"):
            assert set(r) >= {"prediction", "statements", "splited_context"}
    if name == "gateau":
        chosen = read_jsonl(dirs["gateau"] / "records.jsonl")
        assert len(chosen) == len(read_jsonl(dirs["random"] / "records.jsonl")) == 3  # half of 6 candidates
        assert [r["rank"] for r in chosen] == [1, 2, 3]
        assert all((dirs[s] / "model" / "recipe_model.json").exists() for s in ("sft_gateau", "sft_random"))
        assert "| metric | GATEAU | random | GATEAU − random |" in report
    if name == "selfrag":
        from components.selfrag.labels import ASPECT_LABELS

        critic_data = read_jsonl(dirs["critic_data"] / "records.jsonl")
        assert critic_data and {r["split"] for r in critic_data} <= {"train", "dev"}
        for r in critic_data:
            assert r["messages"][-1]["content"] in ASPECT_LABELS[r["task"]]
        for r in read_jsonl(dirs["generator_data"] / "records.jsonl"):
            assert re.search(r"\[Utility:[1-5]\]$", r["output"]) and r["messages"][-1]["content"] == r["output"]
        assert all((dirs[s] / "model" / "recipe_model.json").exists() for s in ("critic", "generator"))


def test_lockfile_rerun_reproduces_outputs_exactly(tmp_path):
    """Greedy decoding: running the lockfile in a fresh folder gives byte-identical stage outputs."""
    loaded, root, dirs = _run("quickstart", tmp_path)
    data = yaml.safe_load((root / "recipe.lock.yaml").read_text())
    data["lock"]["recipe_dir"] = str(RECIPES)  # the copy sits elsewhere: point it back at the recipes
    lock = tmp_path / "copy.lock.yaml"
    lock.write_text(yaml.safe_dump(data, sort_keys=False))
    run_recipe(load_recipe(lock), tmp_path / "runs2", progress=False, publish=False)
    root2 = tmp_path / "runs2" / "quickstart"
    latest2 = json.loads((root2 / "latest.json").read_text())["stages"]
    assert {s: d.name for s, d in dirs.items()} == {s: Path(d).name for s, d in latest2.items()}, \
        "same fingerprints"
    for stage in loaded.order:
        if stage == "export":  # its records name the export file, which lives in the run folder
            continue
        assert (dirs[stage] / "records.jsonl").read_bytes() == (root2 / latest2[stage] / "records.jsonl").read_bytes()
