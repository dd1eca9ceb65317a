"""A published model loads on another machine: published to file://, moved elsewhere with the run folder and
the zoo cache gone, loaded with the lines of its own card.

* a base with no Hub id (``random://``): the adapter is merged into full weights at publishing;
* a base with a Hub id (``hf://``): the adapter stays an adapter naming ``org/name`` and its commit, and
  loads offline with the base in the Hugging Face cache (in a fresh process, as on another machine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from registry.model_folder import TrainedModel, load_weights, read_trained, write_trained
from runner.load import load_recipe
from runner.publish import publish_run
from runner.publish_model import write_portable_model
from runner.session import run_recipe
from tests.components.test_sft_tiny import make_model_folder, one_torch_thread  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
IDS = [[1, 5, 10, 11, 4, 12, 2]]
SHA = "0123456789abcdef0123456789abcdef01234567"


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS)).logits


def use_code(card: str) -> str:
    """The python block under the card's "## Use" heading."""
    section = card.split("## Use", 1)[1]
    return re.search(r"```python\n(.*?)\n```", section, re.S).group(1)


def all_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*")
                     if p.is_file() and p.suffix not in (".safetensors", ".bin", ".parquet"))


def test_an_adapter_over_a_base_without_hub_id_is_published_merged_and_loads_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "zoo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"say {w}"},
                                         {"role": "assistant", "content": f"{w} {w}"}]}
            for i, w in enumerate(["red", "blue", "green"])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(
        "recipe: port\n"
        "stages:\n"
        "  data: {type: load.jsonl, params: {path: train.jsonl}}\n"
        "  sft:\n"
        "    type: train.sft\n"
        "    inputs: {train: data}\n"
        "    model: tiny-random-llama\n"
        "    params: {lora: {r: 4, alpha: 8, dropout: 0.0}, max_steps: 2, max_length: 64, learning_rate: 0.05,\n"
        "             batching: naive, save_steps: 100}\n")
    run_recipe(load_recipe(tmp_path / "r.yaml"), tmp_path / "runs", progress=False, publish=False)
    root = tmp_path / "runs" / "port"
    trained = root / json.loads((root / "latest.json").read_text())["stages"]["sft"] / "model"
    assert read_trained(trained).adapter and read_trained(trained).base_source.startswith("random://")
    expected = logits(load_weights(trained, dtype="float32"))
    assert not torch.allclose(logits(load_weights(read_trained(trained).base_path, dtype="float32")), expected)

    (item,) = publish_run(root, f"file://{tmp_path / 'pub'}", artifacts=["sft"])
    published = tmp_path / "pub" / "port-sft"
    assert item.uri == f"file://{published}"
    assert not (published / "adapter_config.json").exists() and (published / "model.safetensors").is_file()
    meta = json.loads((published / "recipe_model.json").read_text())
    assert meta["adapter"] is False and "base_path" not in meta
    assert str(tmp_path) not in all_text(published)  # no folder of this machine: run, zoo cache, recipe
    card = (published / "README.md").read_text()
    assert "library_name: transformers" in card and "merged into its base at publishing" in card

    # another machine: the folder elsewhere, an empty run folder, no zoo cache
    elsewhere = tmp_path / "elsewhere" / "model"
    elsewhere.parent.mkdir()
    shutil.move(published, elsewhere)
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    shutil.rmtree(tmp_path / "zoo")
    monkeypatch.chdir(elsewhere)
    scope: dict = {}
    exec(use_code(card), scope)  # the card's own lines
    torch.testing.assert_close(logits(scope["model"]), expected, rtol=1e-4, atol=1e-5)
    assert scope["tokenizer"].decode([5]) != ""


@pytest.fixture
def hub_cache(tmp_path) -> Path:
    """A Hugging Face cache holding ``org/tiny`` at commit ``SHA``, as a download leaves it."""
    cache = tmp_path / "hf-cache"
    repo = cache / "models--org--tiny"
    make_model_folder(repo / "snapshots" / SHA)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    return cache


def make_adapter(base: Path, folder: Path) -> None:
    """A LoRA adapter over ``base`` (non-zero, so it changes the outputs) saved as a trainer saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(folder))
    write_trained(folder, TrainedModel(base="tiny", base_source="hf://org/tiny", base_pin=SHA, base_path=base,
                                       adapter=True, base_license="apache-2.0"))


def test_the_adapter_config_names_the_hub_base_and_no_local_folder(tmp_path, hub_cache):
    base = hub_cache / "models--org--tiny" / "snapshots" / SHA
    make_adapter(base, tmp_path / "trained")
    assert json.loads((tmp_path / "trained" / "adapter_config.json").read_text())["base_model_name_or_path"] \
        == str(base)  # what peft wrote: a folder of this machine
    out = write_portable_model(tmp_path / "trained", tmp_path / "out", lambda s, d: (
        d.parent.mkdir(parents=True, exist_ok=True), shutil.copyfile(s, d)))
    assert (out.adapter, out.merged, out.base_hub_id) == (True, False, "org/tiny")
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == ("org/tiny", SHA)
    meta = json.loads((tmp_path / "out" / "recipe_model.json").read_text())
    assert meta == {"base": "tiny", "base_source": f"hf://org/tiny@{SHA}", "base_pin": SHA,
                    "base_license": "apache-2.0", "adapter": True}
    assert str(tmp_path) not in all_text(tmp_path / "out")


def test_a_published_hub_adapter_loads_offline_with_its_cards_lines_and_through_the_zoo(
        tmp_path, hub_cache, monkeypatch):
    base = hub_cache / "models--org--tiny" / "snapshots" / SHA
    run = tmp_path / "runs" / "hubby"
    model_dir = run / "stages" / "sft" / "fp1" / "model"
    make_adapter(base, model_dir)
    (run / "latest.json").write_text(json.dumps({"stages": {"sft": "stages/sft/fp1"}}))
    (model_dir.parent / "manifest.json").write_text(json.dumps({"stage": "sft", "type": "train.sft",
                                                                "status": "done", "fingerprint": "fp1"}))
    expected = logits(load_weights(model_dir, dtype="float32"))
    assert not torch.allclose(logits(load_weights(base, dtype="float32")), expected)  # the adapter counts
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "zoo"))
    publish_run(run, f"file://{tmp_path / 'pub'}")
    published = tmp_path / "pub" / "hubby-sft"
    card = (published / "README.md").read_text()
    assert "base_model: org/tiny" in card and "library_name: peft" in card

    elsewhere = tmp_path / "elsewhere" / "model"
    elsewhere.parent.mkdir()
    shutil.move(published, elsewhere)
    shutil.rmtree(run)
    # the card's lines in a fresh process, offline, with the base only in the Hugging Face cache
    script = use_code(card) + "\nimport json, torch\nwith torch.no_grad():\n" \
        f"    print(json.dumps(model(input_ids=torch.tensor({IDS})).logits.tolist()))\n"
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    # the runner loads it too (a published model in the user zoo): the base comes through the zoo
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.testing.assert_close(logits(load_weights(elsewhere, dtype="float32")), expected, rtol=1e-4, atol=1e-5)
