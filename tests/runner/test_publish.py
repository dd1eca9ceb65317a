"""publish_run: folder and Hub layouts, Parquet or JSONL data, cards through huggingface_hub's card data,
portable adapter metadata, zoo registration, choice of artifacts, the Hub token, no secret leaks."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from registry.model_folder import TrainedModel, TrainingSummary, write_trained
from runner.publish import PublishError, publish_run

HF_TOKEN = "hf_plantedTokenValue0123456789"
OPENAI_KEY = "sk-plantedOpenaiKey9876543210"
OTHER_KEY = "zz-plantedServiceKey55555"
SECRETS = (HF_TOKEN, OPENAI_KEY, OTHER_KEY)


PARQUET = "data/train-00000-of-00001.parquet"


def write_stage(run: Path, name: str, *, records=None, status="done", model=False, metrics=None,
                type_="demo.type", params=None) -> None:
    rel = f"stages/{name}/fp{name}"
    sdir = run / rel
    sdir.mkdir(parents=True)
    counts = {"in": 3, "out": len(records or []), "failed": 1}
    (sdir / "manifest.json").write_text(json.dumps({
        "stage": name, "type": type_, "fingerprint": f"fp{name}", "status": status, "counts": counts,
        "produces_model": model, "params": params or {}}))
    (sdir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records or []))
    if metrics is not None:
        (sdir / "metrics.json").write_text(json.dumps(metrics))
    if model:
        m = sdir / "model"
        (m / "sub").mkdir(parents=True)
        (m / "adapter_config.json").write_text(json.dumps({
            "r": 4, "note": f"key {OPENAI_KEY}", "base_model_name_or_path": "/x/hf-cache/tiny-base", "revision": None}))
        (m / "adapter_model.safetensors").write_bytes(b"\x00\x01binary\xff")
        (m / "sub" / "tokenizer.json").write_text("{}")
        (m / "README.md").write_text("---\nlicense: mit\n---\nA stray card in the model folder.\n")
        write_trained(m, TrainedModel(
            base="tiny", base_source="hf://org/tiny-base@abc123", base_path=Path("/x/hf-cache/tiny-base"),
            adapter=True, base_license="apache-2.0",
            training=TrainingSummary(
                component="train.sft", stage=name, description="Trained for 2 epochs on 40 records.",
                tags=["sft", "longalign"], steps=6, tokens=1234, first_loss=2.5, final_loss=1.25,
                settings={"batching": "packed", "max_steps": None, "lora": {"r": 4}})))
    latest = run / "latest.json"
    data = json.loads(latest.read_text()) if latest.exists() else {"stages": {}}
    data["stages"][name] = rel
    latest.write_text(json.dumps(data))


LOCK = """\
# Written by `recipe run`.
recipe: demo
stages:
  docs: {type: load.jsonl, params: {path: docs.jsonl}}
  sft: {type: train.sft, inputs: {train: docs}, models: {base: base}}
  eval: {type: judge.llm_score, inputs: {predictions: docs}, model: sft}
  other_judge: {type: judge.llm_score, inputs: {predictions: docs}, model: judge}
lock:
  recipe_dir: ../../recipe_home
  note: token HF_TOKEN_HERE
""".replace("HF_TOKEN_HERE", HF_TOKEN)


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants

    # no saved login of this machine takes part: the token file is one the test controls
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("MY_SERVICE_API_KEY", OTHER_KEY)
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(
        "recipe: demo\nmodels:\n  judge: {name: gpt, api_key: " + OPENAI_KEY + "}\n"
        "stages:\n  docs: {type: load.jsonl, params: {path: docs.jsonl}}\n")
    (run / "recipe.lock.yaml").write_text(LOCK)
    (run / "report.md").write_text("# report\n")
    write_stage(run, "docs", records=[{"idx": 0, "text": "hello", "n": 1},
                                      {"idx": 1, "text": f"leaked {OTHER_KEY}", "n": None}],
                params={"path": str(tmp_path / "recipe_home" / "docs.jsonl")})
    write_stage(run, "sft", model=True, metrics={"loss": 1.25}, type_="train.sft")
    write_stage(run, "eval", records=[{"id": "a", "score": 7.0}], type_="judge.llm_score",
                metrics={"mean_score": 7.0, "n": 1, "parse_ok": True, "missing": None, "by_group": {"a": 7.0}})
    write_stage(run, "other_judge", records=[{"id": "a", "score": 3.0}], metrics={"mean_score": 3.0},
                type_="judge.llm_score")
    write_stage(run, "empty", records=[])
    write_stage(run, "broken", records=[{"x": 1}], status="failed")
    return run


@pytest.fixture
def zoo_added(monkeypatch) -> list:
    """Records user-zoo additions instead of writing the user's zoo file."""
    added: list = []
    try:
        from registry import zoo
    except ImportError:  # the zoo module may not be importable in isolation; give publish a stand-in
        zoo = types.ModuleType("registry.zoo")

        class ZooEntry(BaseModel):
            model_config = ConfigDict(extra="allow")
            name: str
            source: str
            kind: str = "chat"
            description: str = ""

        zoo.ZooEntry = ZooEntry
        monkeypatch.setitem(sys.modules, "registry.zoo", zoo)
    monkeypatch.setattr(zoo, "add_user_entry", added.append, raising=False)
    return added


def all_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
                     and p.suffix != ".parquet")


def parquet_rows(path: Path) -> list[dict]:
    from datasets import Dataset

    return Dataset.from_parquet(str(path)).to_list()


def card_data(path: Path, kind: str = "model") -> dict:
    """The card's metadata as huggingface_hub reads it."""
    from huggingface_hub import DatasetCard, ModelCard

    card = (ModelCard if kind == "model" else DatasetCard)(path.read_text())
    return card.data.to_dict()


def test_file_default_publishes_datasets_and_models_under_the_run(run_dir, zoo_added):
    items = publish_run(run_dir, None)
    out = run_dir / "published"
    assert {(i.stage, i.kind) for i in items} == {("docs", "dataset"), ("sft", "model"), ("eval", "dataset"),
                                                  ("other_judge", "dataset")}
    docs = out / "demo-docs"
    assert sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*") if p.is_file()) == [
        "README.md", PARQUET, "manifest.json", "recipe.lock.yaml", "recipe.yaml"]
    assert parquet_rows(docs / PARQUET) == [{"idx": 0, "text": "hello", "n": 1},
                                            {"idx": 1, "text": "leaked ***", "n": None}]
    # path params are relative to the recipe folder again, as in the lockfile
    assert json.loads((docs / "manifest.json").read_text())["params"] == {"path": "docs.jsonl"}
    sft = out / "demo-sft"
    assert (sft / "adapter_model.safetensors").read_bytes() == b"\x00\x01binary\xff"
    assert (sft / "sub" / "tokenizer.json").read_text() == "{}"
    assert json.loads((sft / "metrics.json").read_text()) == {"loss": 1.25}
    # the adapter names its base by Hub id and commit, not by a folder of the machine that trained it
    assert json.loads((sft / "adapter_config.json").read_text()) == {
        "r": 4, "note": "key ***", "base_model_name_or_path": "org/tiny-base", "revision": "abc123"}
    meta = json.loads((sft / "recipe_model.json").read_text())
    assert "base_path" not in meta and meta["base_source"] == "hf://org/tiny-base@abc123" and meta["adapter"]
    assert "/x/hf-cache" not in all_text(sft)
    sft_item = next(i for i in items if i.stage == "sft")
    assert sft_item.uri == f"file://{sft}" and sft_item.zoo_name == "demo-sft"
    assert "recipe_model.json" in sft_item.files and "README.md" in sft_item.files
    assert [(e.name, e.source, e.kind) for e in zoo_added] == [("demo-sft", f"file://{sft}", "chat")]
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temp folders left behind


def test_dataset_card_holds_counts_fields_metrics_recipe_lock_and_command(run_dir, zoo_added):
    publish_run(run_dir, None, artifacts=["docs", "eval"])
    card = (run_dir / "published" / "demo-docs" / "README.md").read_text()
    data = card_data(run_dir / "published" / "demo-docs" / "README.md", "dataset")
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": PARQUET}]}]
    assert data["tags"] == ["recipe-zoo", "demo"] and data["pretty_name"] == "demo-docs"
    assert "| 3 | 2 | 1 |" in card  # in / out / failed from the manifest
    assert "| `n` | 2 | int, null |" in card and "| `text` | 2 | str |" in card
    assert "recipe run recipe.lock.yaml" in card
    assert "stages:\n  docs: {type: load.jsonl" in card  # the recipe
    assert "# Written by `recipe run`." in card  # the lockfile
    eval_card = (run_dir / "published" / "demo-eval" / "README.md").read_text()
    assert '"mean_score": 7.0' in eval_card


def test_records_without_a_common_schema_go_out_as_json_lines(run_dir, zoo_added):
    write_stage(run_dir, "mixed", records=[{"v": 1, "w": [1]}, {"v": "one"}])
    write_stage(run_dir, "floats", records=[{"v": 1}, {"v": 2.5}])  # Parquet would make 1 a float
    publish_run(run_dir, None, artifacts=["mixed", "floats"])
    for name in ("mixed", "floats"):
        folder = run_dir / "published" / f"demo-{name}"
        assert not (folder / PARQUET).exists()
        assert (folder / "data" / "train.jsonl").read_text() == (run_dir / "stages" / name / f"fp{name}" /
                                                                  "records.jsonl").read_text()
        data = card_data(folder / "README.md", "dataset")
        assert data["configs"][0]["data_files"] == [{"split": "train", "path": "data/train.jsonl"}]
        assert "(JSON lines: the records have no common schema)" in (folder / "README.md").read_text()


def test_model_card_names_the_base_and_adapter(run_dir, zoo_added):
    publish_run(run_dir, None, artifacts=["sft"])
    card = (run_dir / "published" / "demo-sft" / "README.md").read_text()
    data = card_data(run_dir / "published" / "demo-sft" / "README.md")
    assert (data["base_model"], data["library_name"], data["pipeline_tag"], data["license"]) == (
        "org/tiny-base", "peft", "text-generation", "apache-2.0")
    assert data["tags"] == ["recipe-zoo", "demo", "sft", "longalign"]  # the trainer's tags join ours
    assert "datasets" not in data  # nothing published to the Hub with it
    # the judge of this model, its numbers only; not the judge of another model
    (index,) = data["model-index"]
    assert index["name"] == "demo-sft"
    assert [(r["dataset"]["name"], m["type"], m["value"]) for r in index["results"] for m in r["metrics"]] == [
        ("eval", "mean_score", 7.0), ("eval", "n", 1)]
    assert "| `eval` | mean_score | 7 |" in card and "| `other_judge` |" not in card
    assert "PEFT adapter" in card and '"loss": 1.25' in card and "recipe run recipe.lock.yaml" in card
    # the trainer's summary from the model's metadata; a README.md in the model folder is not the card
    assert ("## Training notes\n\nTrained for 2 epochs on 40 records.\n\n"
            "Training: 6 optimizer steps, 1234 tokens, loss 2.5000 → 1.2500.\n\n"
            "| setting | value |\n| --- | --- |\n| batching | packed |\n| max_steps | None |\n| lora | {'r': 4} |\n"
            ) in card
    assert 'model = AutoPeftModelForCausalLM.from_pretrained(".")' in card
    assert "The adapter loads over `org/tiny-base`" in card
    assert "license: mit" not in card and "stray card" not in card


def test_a_full_model_card_without_training_notes(run_dir, zoo_added):
    model = run_dir / "stages" / "sft" / "fpsft" / "model"
    (model / "adapter_config.json").unlink()
    write_trained(model, TrainedModel(base="tiny", base_source="file:///models/tiny", base_path=Path("/models/tiny"),
                                      adapter=False, base_license="glm-4"))
    publish_run(run_dir, None, artifacts=["sft"])
    card = (run_dir / "published" / "demo-sft" / "README.md").read_text()
    data = card_data(run_dir / "published" / "demo-sft" / "README.md")
    assert data["library_name"] == "transformers" and "base_model" not in data  # not a Hub model
    assert (data["license"], data["license_name"]) == ("other", "glm-4")
    assert "- weights: the full model" in card and "## Training notes" not in card
    assert 'AutoModelForCausalLM.from_pretrained(".")' in card
    meta = json.loads((run_dir / "published" / "demo-sft" / "recipe_model.json").read_text())
    assert meta == {"base": "tiny", "base_license": "glm-4", "adapter": False}  # no folder of this machine


@pytest.mark.parametrize(("text", "fields"), [
    ("apache-2.0", {"license": "apache-2.0"}), ("llama2 (base weights)", {"license": "llama2"}),
    ("chatglm3 (model license)", {"license": "other", "license_name": "chatglm3"}), (None, {})])
def test_zoo_licenses_become_hub_license_fields(text, fields):
    from runner.cards import hub_license

    assert hub_license(text) == fields


def test_no_secret_in_any_published_file(run_dir, zoo_added):
    items = publish_run(run_dir, "file://" + str(run_dir.parent / "pub"))
    text = all_text(run_dir.parent / "pub")
    for secret in SECRETS:
        assert secret not in text
        assert all(secret not in str(i) for i in items)
    assert "api_key: ***" in (run_dir.parent / "pub" / "demo-docs" / "recipe.yaml").read_text()
    assert parquet_rows(run_dir.parent / "pub" / "demo-docs" / PARQUET)[1]["text"] == "leaked ***"
    assert "key ***" in (run_dir.parent / "pub" / "demo-sft" / "adapter_config.json").read_text()


def test_relative_folder_is_relative_to_the_recipe_folder(run_dir, zoo_added, tmp_path):
    (item,) = publish_run(run_dir, "file://shelf", artifacts=["docs"])
    # the lockfile says the recipe folder is ../../recipe_home from the run folder
    assert item.uri == f"file://{tmp_path / 'recipe_home' / 'shelf' / 'demo-docs'}"
    assert (tmp_path / "recipe_home" / "shelf" / "demo-docs" / "README.md").is_file()


def test_relative_folder_uses_base_dir_and_republishing_replaces(run_dir, zoo_added, tmp_path):
    publish_run(run_dir, "file://shelf", artifacts=["docs"], base_dir=tmp_path, recipe_name="my recipe")
    dest = tmp_path / "shelf" / "my-recipe-docs"
    (dest / "stale.txt").write_text("old")
    publish_run(run_dir, "file://shelf", artifacts=["docs"], base_dir=tmp_path, recipe_name="my recipe")
    assert (dest / "README.md").exists() and not (dest / "stale.txt").exists()


def test_artifact_choice_errors(run_dir, zoo_added):
    with pytest.raises(PublishError, match="no stage named 'dcos'.*did you mean 'docs'"):
        publish_run(run_dir, None, artifacts=["dcos"])
    with pytest.raises(PublishError, match="'broken' is not finished"):
        publish_run(run_dir, None, artifacts=["broken"])
    with pytest.raises(PublishError, match="'empty' has neither records, metrics nor a model"):
        publish_run(run_dir, None, artifacts=["empty"])
    with pytest.raises(PublishError, match="unknown publish target"):
        publish_run(run_dir, "s3://bucket", artifacts=["docs"])
    with pytest.raises(PublishError, match="not a run folder"):
        publish_run(run_dir.parent, None)


class HubRecorder:
    """Stands in for huggingface_hub.HfApi: records calls and what each upload would send."""

    instances: ClassVar[list[HubRecorder]] = []

    def __init__(self, token=None):
        self.token = token
        self.repos: list[tuple] = []
        self.uploads: list[dict] = []
        HubRecorder.instances.append(self)

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kw):
        self.repos.append((repo_id, repo_type, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, **kw):
        root = Path(folder_path)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        self.uploads.append({"repo_id": repo_id, "repo_type": repo_type, "files": files})


@pytest.fixture
def hub(monkeypatch) -> type[HubRecorder]:
    import huggingface_hub

    HubRecorder.instances = []
    monkeypatch.setattr(huggingface_hub, "HfApi", HubRecorder)
    return HubRecorder


def test_hub_creates_private_repos_per_stage_and_uploads_the_layout(run_dir, hub, zoo_added):
    items = publish_run(run_dir, "hf://my-org/demo", artifacts=["docs", "sft", "eval"])
    (api,) = hub.instances
    assert api.token == HF_TOKEN
    assert api.repos == [("my-org/demo-docs", "dataset", True, True), ("my-org/demo-sft", "model", True, True),
                         ("my-org/demo-eval", "dataset", True, True)]
    docs, sft, _ = api.uploads
    assert docs["repo_type"] == "dataset" and set(docs["files"]) == {
        "README.md", PARQUET, "manifest.json", "recipe.lock.yaml", "recipe.yaml"}
    assert sft["repo_type"] == "model" and {"adapter_model.safetensors", "recipe_model.json", "README.md",
                                            "recipe.lock.yaml", "metrics.json"} <= set(sft["files"])
    assert [i.uri for i in items] == ["hf://my-org/demo-docs", "hf://my-org/demo-sft", "hf://my-org/demo-eval"]
    assert zoo_added == []  # Hub models are not added to the local zoo
    # the model card names the data it was trained on and the judge's records by their Hub ids
    card = sft["files"]["README.md"].decode()
    from huggingface_hub import ModelCard

    data = ModelCard(card).data.to_dict()
    assert data["datasets"] == ["my-org/demo-docs"]
    assert data["model-index"][0]["results"][0]["dataset"] == {"name": "eval", "type": "my-org/demo-eval"}
    assert 'AutoPeftModelForCausalLM.from_pretrained("my-org/demo-sft")' in card
    for upload in api.uploads:
        blob = b"\n".join(v for k, v in upload["files"].items() if not k.endswith(".parquet"))
        for secret in SECRETS:
            assert secret.encode() not in blob


def test_hub_single_artifact_uses_the_name_as_given_and_public_when_asked(run_dir, hub, zoo_added):
    publish_run(run_dir, "hf://my-org/demo", artifacts=["eval"], private=False)
    assert hub.instances[0].repos == [("my-org/demo", "dataset", False, True)]


def test_hub_takes_the_saved_login_when_hf_token_is_unset(run_dir, hub, zoo_added, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN")
    saved = Path(huggingface_hub.constants.HF_TOKEN_PATH)
    saved.parent.mkdir(parents=True)
    saved.write_text("hf_savedLoginToken42424242\n")
    write_stage(run_dir, "notes", records=[{"text": "the saved token hf_savedLoginToken42424242"}])
    publish_run(run_dir, "hf://my-org/demo", artifacts=["notes"])
    assert hub.instances[0].token == "hf_savedLoginToken42424242"
    blob = b"".join(v for k, v in hub.instances[0].uploads[0]["files"].items() if not k.endswith(".parquet"))
    assert b"hf_savedLoginToken" not in blob  # masked like any other secret


def test_hub_needs_a_token_and_hides_hub_errors_secrets(run_dir, hub, zoo_added, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match=r"needs a Hugging Face token: none in \$HF_TOKEN or a saved login"):
        publish_run(run_dir, "hf://my-org/demo", artifacts=["docs"])
    monkeypatch.setenv("MY_HUB_CREDENTIAL", "credential-value-123")

    def failing(self, *a, **k):
        raise RuntimeError("401 for token credential-value-123")

    monkeypatch.setattr(HubRecorder, "create_repo", failing)
    with pytest.raises(PublishError, match="failed") as err:
        publish_run(run_dir, "hf://my-org/demo", artifacts=["docs"], token_env="MY_HUB_CREDENTIAL")
    assert "credential-value-123" not in str(err.value)
    with pytest.raises(PublishError, match="expected hf://org/name"):
        publish_run(run_dir, "hf://just-a-name", artifacts=["docs"], token_env="MY_HUB_CREDENTIAL")


def test_the_run_report_is_published_beside_each_artifact_and_the_card_links_it(run_dir, zoo_added):
    from runner.report_html import write_html_report

    (run_dir / "stages/docs/fpdocs/failures.jsonl").write_text(json.dumps(
        {"record_id": "2", "error": "no score", "raw": f"model said {OTHER_KEY}"}) + "\n")
    write_html_report(run_dir)
    assert OTHER_KEY not in (run_dir / "report.html").read_text()  # masked when written
    publish_run(run_dir, None, artifacts=["docs", "sft"])
    for name in ("demo-docs", "demo-sft"):
        folder = run_dir / "published" / name
        page = (folder / "report.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and "model said ***" in page
        assert "[`report.html`](report.html)" in (folder / "README.md").read_text()
        assert not any(s in all_text(folder) for s in SECRETS)
