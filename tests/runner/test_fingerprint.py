"""Stage fingerprints from explicit inputs: what changes them and what must not."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from helpers import write

from runner.fingerprint import digest, model_identity, stage_fingerprints, stage_seed, text_hash
from runner.load import Binding, load_recipe

RECIPE = """\
recipe: demo
seed: 3
models:
  gen: {name: tiny-random-llama, options: {batch_size: 2}}
stages:
  nums:
    type: demo_components:Numbers
    params: {n: 5}
  ask:
    type: demo_components:Ask
    inputs: {records: nums}
    model: gen
  count:
    type: demo_components:CountRuns
    inputs: {records: ask}
    params: {log_file: count.log}
"""


class Zoo:
    """Entries by name; ``resolve`` pins a file:// folder as ``pin-<name>``."""

    def __init__(self, **entries) -> None:
        self.entries = entries

    def get(self, name):
        return self.entries[name]

    def resolve(self, name, pull=False):
        return SimpleNamespace(pin=f"pin-{name}")


def entry(source, chat_template=None, serving=None):
    return SimpleNamespace(source=source, chat_template=chat_template, serving=serving, api=None)


def no_revisions(stage, fp):
    return 0


def test_digest_is_sha256_of_compact_sorted_json():
    assert digest({"b": 1, "a": [1, "é"]}) == hashlib.sha256('{"a":[1,"é"],"b":1}'.encode()).hexdigest()


def test_stage_seed_from_recipe_seed_and_name():
    want = int(hashlib.sha256(b'[3,"ask"]').hexdigest()[:8], 16) & 0x7FFFFFFF
    assert stage_seed(3, "ask") == want


def test_model_identity_leaves_out_speed_only_options():
    zoo = Zoo(m=entry("hf://org/m", chat_template="T", serving={"max_model_len": 10, "gpu_memory_utilization": 0.5}))
    b = Binding(slot="llm", kind="zoo", ref="m", backend="vllm", options={"concurrency": 4, "top_k": 1})
    assert model_identity(b, zoo, {}) == [
        "zoo", "hf://org/m", None,
        {"chat_template": text_hash("T"), "serving": {"max_model_len": 10}, "api": {"model_id": None, "base_url": None}},
        "vllm", {"top_k": 1}]


def test_model_identity_of_unknown_names_local_folders_and_trained_stages():
    zoo = Zoo(local=entry("file:///models/x"))
    assert model_identity(Binding(slot="llm", kind="zoo", ref="random://x"), zoo, {}) == \
        ["zoo", "random://x", None, None, None, {}]
    assert model_identity(Binding(slot="llm", kind="zoo", ref="local"), zoo, {})[:3] == \
        ["zoo", "file:///models/x", "pin-local"]
    assert model_identity(Binding(slot="llm", kind="stage", ref="train"), zoo, {"train": "f00"}) == ["stage", "f00"]


def test_fingerprints_follow_upstream_changes_and_revisions(tmp_path):
    p = write(tmp_path / "r.yaml", RECIPE)
    zoo = Zoo()
    base = stage_fingerprints(load_recipe(p), zoo, no_revisions)
    assert list(base) == ["nums", "ask", "count"]
    # a speed-only option changes nothing
    assert stage_fingerprints(load_recipe(p, overrides=["models.gen.options.batch_size=8"]), zoo,
                              no_revisions) == base
    # a changed middle stage changes itself and what follows, not what comes before
    fps = stage_fingerprints(load_recipe(p, overrides=["stages.ask.params.max_new_tokens=9"]), zoo, no_revisions)
    assert fps["nums"] == base["nums"] and fps["ask"] != base["ask"] and fps["count"] != base["count"]
    # a stage re-run in place (revision 1) changes only the stages after it
    seen = []

    def revision(stage, fp):
        seen.append((stage, fp))
        return 1 if stage == "ask" else 0

    fps = stage_fingerprints(load_recipe(p), zoo, revision)
    assert seen == [("nums", base["nums"]), ("ask", base["ask"])]
    assert fps["nums"] == base["nums"] and fps["ask"] == base["ask"] and fps["count"] != base["count"]


def test_moving_the_recipe_folder_keeps_fingerprints(tmp_path):
    text = RECIPE.replace("params: {n: 5}", "params: {n: 5, path: data.txt}")
    fps = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "data.txt").write_text("same content")
        fps.append(stage_fingerprints(load_recipe(write(tmp_path / d / "r.yaml", text)), Zoo(), no_revisions))
    assert fps[0] == fps[1]
    (tmp_path / "b" / "data.txt").write_text("other content")
    changed = stage_fingerprints(load_recipe(tmp_path / "b" / "r.yaml"), Zoo(), no_revisions)
    assert changed["nums"] != fps[0]["nums"]


def test_tracking_settings_leave_a_trainers_fingerprint_alone(tmp_path):
    p = write(tmp_path / "r.yaml", "recipe: t\nstages:\n  data: {type: load.jsonl, params: {path: d.jsonl}}\n"
              "  sft: {type: train.sft, inputs: {train: data}, model: tiny-random-llama}\n")
    (tmp_path / "d.jsonl").write_text("")
    base = stage_fingerprints(load_recipe(p), Zoo(), no_revisions)
    watched = load_recipe(p, overrides=["stages.sft.params.report_to=[tensorboard, wandb]",
                                        "stages.sft.params.logging_steps=3", "stages.sft.params.tracking_project=x"])
    assert watched.components["sft"].params.report_to == ["tensorboard", "wandb"]
    assert stage_fingerprints(watched, Zoo(), no_revisions) == base
    changed = stage_fingerprints(load_recipe(p, overrides=["stages.sft.params.learning_rate=0.1"]), Zoo(),
                                 no_revisions)
    assert changed["sft"] != base["sft"]
