"""train.sft on a tiny local model: learning, artifacts, exact resume, gradient accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from components.trainers.sft import SFT, SFTParams
from registry.model_folder import TrainedModel, read_trained, write_trained
from tests.components.test_sft_tiny import make_tokenizer, one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

X = -100


class Killed(Exception):
    pass


class KillAfter(FakeCtx):
    """A context whose run is killed right after optimizer step ``k`` (its progress report)."""

    def __init__(self, k: int, **kw) -> None:
        super().__init__(**kw)
        self.k = k

    def advance(self, n: int = 1, total: int | None = None) -> None:
        super().advance(n, total)
        if self.advanced >= self.k:
            raise Killed


def chat(user: str, answer: str, i: int = 0) -> dict:
    return {
        "id": f"c{i}",
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
    }


def run(params: SFTParams, records: list[dict], folder: Path, tmp: Path, ctx_cls=FakeCtx, **kw):
    comp = SFT(params)
    ctx = ctx_cls(params=params, tmp=tmp, models={("source", "base"): resolved(folder)}, **kw)
    return comp, ctx, comp.run({"train": records}, ctx)


def test_three_steps_reduce_loss_and_write_the_model_folder(tmp_path, tiny_folder):  # noqa: F811
    records = [chat("what is two plus three", "five , yes", i) for i in range(2)]
    p = SFTParams(
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        learning_rate=2e-2,
        max_steps=3,
        warmup_ratio=0,
        max_length=64,
        lr_scheduler="constant",
    )
    comp, ctx, out = run(p, records, tiny_folder, tmp_path)
    assert [r["step"] for r in out] == [1, 2, 3]
    assert out[2]["loss"] < out[1]["loss"] < out[0]["loss"]
    assert ctx.advanced == 3
    model_dir = ctx.artifact_dir / "model"
    meta = read_trained(model_dir)
    assert (meta.base, meta.base_source, meta.base_path, meta.adapter) == (
        "tiny-llama", "random://llama?hidden_size=32", tiny_folder, True)
    # what the card that publish writes will say about the run
    t = meta.training
    assert (t.component, t.stage, t.steps, t.tokens) == ("train.sft", "test", 3, 3 * 26)
    assert (t.first_loss, t.final_loss) == (out[0]["loss"], out[2]["loss"])
    assert t.description == ("Supervised fine-tune on assistant tokens only, with LongAlign-style packed batching "
                             "and per-sequence loss weighting.")
    assert t.settings["lora"] == {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
    assert t.settings["learning_rate"] == 2e-2 and t.settings["max_steps"] == 3
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (model_dir / name).is_file(), name
    assert not (model_dir / "README.md").exists()  # the card is publish's business
    metrics = comp.summarize(out, ctx)
    assert metrics["steps"] == 3 and metrics["final_loss"] == out[-1]["loss"]
    # both rows in one pack per step: 2 x 13 tokens, 2 x 4 targets ("five , yes <|end|>")
    assert metrics["tokens_trained"] == 3 * 26 and metrics["target_tokens"] == 3 * 8
    assert metrics["tokenize_rows_in"] == 2 and metrics["tokenize_rows_out"] == 2
    assert "3 steps" in comp.report(out, metrics, ctx) and (ctx.artifact_dir / "loss.png").is_file()

    from peft import AutoPeftModelForCausalLM

    reloaded = AutoPeftModelForCausalLM.from_pretrained(str(model_dir))
    trained = load_file(str(model_dir / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in trained.items())
    assert reloaded is not None


def test_resume_after_a_kill_reaches_the_uninterrupted_weights(tmp_path, tiny_folder):  # noqa: F811
    # distinct rows, one per step: the resumed run must pick up the data order where it stopped;
    # LoRA dropout makes the restored RNG state matter
    records = [
        chat("what is two plus three", "five", 0),
        chat("tell me about the sky", "blue", 1),
        chat("hello there", "hi friend", 2),
        chat("what is the sea", "green and blue", 3),
    ]
    p = SFTParams(
        lora={"r": 4, "alpha": 8, "dropout": 0.1},
        learning_rate=1e-2,
        max_steps=3,
        save_steps=2,
        batching="naive",
        max_length=64,
        seed=5,
    )
    _, ctx_a, out_a = run(p, records, tiny_folder, tmp_path / "a")

    with pytest.raises(Killed):
        run(p, records, tiny_folder, tmp_path / "b", ctx_cls=KillAfter, k=2)
    assert (tmp_path / "b" / "scratch" / "checkpoints" / "step-00000002" / "trainer_state.json").is_file()
    assert not (tmp_path / "b" / "artifacts" / "model").exists()
    _, ctx_b, out_b = run(p, records, tiny_folder, tmp_path / "b")

    assert out_b == out_a
    wa = load_file(str(ctx_a.artifact_dir / "model" / "adapter_model.safetensors"))
    wb = load_file(str(ctx_b.artifact_dir / "model" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_checkpoint_holds_only_the_adapter_weights(tmp_path, tiny_folder):  # noqa: F811
    p = SFTParams(lora={"r": 4, "alpha": 8}, max_steps=2, save_steps=1, max_length=64)
    run(p, [chat("hello", "hi", 0)], tiny_folder, tmp_path)
    saved = load_file(str(tmp_path / "scratch" / "checkpoints" / "step-00000001" / "model.safetensors"))
    assert saved and all("lora_" in k for k in saved)


def mean_of_sequence_means(folder: Path, rows: list[tuple[list[int], list[int]]], weighting: bool) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    losses, counts = [], []
    with torch.no_grad():
        for ids, labels in rows:
            logits = model(torch.tensor([ids])).logits[0, :-1]
            target = torch.tensor(labels[1:])
            keep = target != X
            losses.append(F.cross_entropy(logits[keep], target[keep]).item())
            counts.append(int(keep.sum()))
    if weighting:
        return sum(losses) / len(losses)
    return sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts)


@pytest.mark.parametrize("weighting", [True, False])
def test_two_accumulated_micro_steps_equal_one_batch_of_two(tmp_path, tiny_folder, weighting):  # noqa: F811
    tok = make_tokenizer()
    # pre-tokenized rows with different target counts (1 and 6), so weighting changes the loss
    a = tok("<s> <|user|> hello <|end|> <|assistant|> hi <|end|>", add_special_tokens=False)["input_ids"]
    b = tok("<s> <|user|> what is it <|end|> <|assistant|> the cat sat on the mat", add_special_tokens=False)[
        "input_ids"
    ]
    rows = [(a, [X] * 5 + a[5:6] + [X]), (b, [X] * 7 + b[7:])]
    records = [{"id": f"t{i}", "input_ids": ids, "labels": labels} for i, (ids, labels) in enumerate(rows)]
    # adam_epsilon = 1 makes the first update proportional to the gradient, not just its sign
    common = {
        "lora": None,
        "learning_rate": 0.5,
        "adam_epsilon": 1.0,
        "max_grad_norm": None,
        "max_steps": 1,
        "warmup_ratio": 0,
        "batching": "naive",
        "loss_weighting": weighting,
        "max_length": 64,
        "seed": 0,
        "lr_scheduler": "constant",
    }
    _, ctx1, out1 = run(
        SFTParams(per_device_batch_size=1, gradient_accumulation_steps=2, **common),
        records,
        tiny_folder,
        tmp_path / "accum",
    )
    _, ctx2, out2 = run(
        SFTParams(per_device_batch_size=2, gradient_accumulation_steps=1, **common),
        records,
        tiny_folder,
        tmp_path / "batch",
    )
    expected = mean_of_sequence_means(tiny_folder, rows, weighting)
    assert out1[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert out2[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert out1[0]["sequences"] == out2[0]["sequences"] == 2
    w1 = load_file(str(ctx1.artifact_dir / "model" / "model.safetensors"))
    w2 = load_file(str(ctx2.artifact_dir / "model" / "model.safetensors"))
    w0 = load_file(str(tiny_folder / "model.safetensors"))
    moved = max((w1[k] - w0[k]).abs().max().item() for k in w0)
    assert moved > 1e-4  # the step did something
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=moved * 1e-4, msg=k)


def test_full_fine_tune_writes_full_weights(tmp_path, tiny_folder):  # noqa: F811
    p = SFTParams(lora=None, max_steps=1, max_length=64, batching="sorted", per_device_batch_size=2)
    _, ctx, out = run(p, [chat("hello there", "hi friend", 0), chat("hello", "hi", 1)], tiny_folder, tmp_path)
    model_dir = ctx.artifact_dir / "model"
    assert read_trained(model_dir).adapter is False
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file()
    assert not (model_dir / "adapter_config.json").exists()
    assert out[0]["sequences"] == 2


def test_metrics_count_rows_left_out_of_packs(tmp_path, tiny_folder):  # noqa: F811
    # rows of 9 tokens ("hello there" / "hi friend") and one of 15 tokens; packs of 12 tokens
    long = chat("what is two plus three and four", "five six seven", 9)
    records = [chat("hello there", "hi friend", i) for i in range(3)] + [long]
    p = SFTParams(max_steps=1, max_length=64, max_pack_tokens=12, drop_last_pack=True)
    comp, ctx, out = run(p, records, tiny_folder, tmp_path)
    metrics = comp.summarize(out, ctx)
    # 3 rows of 9 tokens: each fills its own pack (9 + 9 > 12); the 15-token row is skipped;
    # the last pack is dropped
    assert metrics["skipped_too_long"] == 1
    assert metrics["dropped_last_pack_rows"] == 1
    assert out[0]["sequences"] == 1 and out[0]["tokens"] == 9


def test_attention_modes_position_modes_and_checkpointing_agree_on_the_first_loss(tmp_path, tiny_folder):  # noqa: F811
    # the first step's loss depends only on the initial weights and the data: every way of running
    # attention must give the mean of the per-sequence mean losses
    records = [
        chat("what is two plus three", "five", 0),
        chat("hello there", "hi friend , yes", 1),
        chat("tell me about the sky", "blue", 2),
    ]
    tok = make_tokenizer()
    rows = []
    for r in records:
        text = tok.apply_chat_template(r["messages"], tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        start = ids.index(tok.convert_tokens_to_ids("<|assistant|>")) + 1
        rows.append((ids, [X] * start + ids[start:]))
    expected = mean_of_sequence_means(tiny_folder, rows, weighting=True)
    variants = [
        {"attention": "mask"},
        {"attention": "varlen"},
        {"attention": "mask", "reset_position_ids": True},
        {"attention": "varlen", "gradient_checkpointing": True, "lora": {"r": 4, "alpha": 8}},
    ]
    for n, extra in enumerate(variants):
        p = SFTParams(max_steps=1, max_length=64, **extra)
        _, _, out = run(p, records, tiny_folder, tmp_path / str(n))
        assert out[0]["sequences"] == 3
        assert out[0]["loss"] == pytest.approx(expected, rel=1e-5), extra


def test_a_trained_adapter_can_be_the_base_of_the_next_run(tmp_path, tiny_folder):  # noqa: F811
    records = [chat("hello there", "hi friend", 0)]
    _, ctx1, _ = run(
        SFTParams(lora={"r": 4, "alpha": 8}, learning_rate=1e-2, max_steps=1, max_length=64),
        records,
        tiny_folder,
        tmp_path / "first",
    )
    adapter_dir = ctx1.artifact_dir / "model"
    p = SFTParams(lora={"r": 4, "alpha": 8}, max_steps=1, max_length=64)
    comp = SFT(p)
    ctx2 = FakeCtx(params=p, tmp=tmp_path / "second", models={("source", "base"): resolved(adapter_dir)})
    comp.run({"train": records}, ctx2)
    out_dir = ctx2.artifact_dir / "model"
    # an adapter on top of a merged adapter has no base folder of its own: it is saved merged, as full weights
    assert read_trained(out_dir).adapter is False
    assert (out_dir / "model.safetensors").is_file()
    assert not any("lora" in k for k in load_file(str(out_dir / "model.safetensors")))


def test_an_adapter_with_a_relative_base_path_and_added_tokens_can_be_the_base(tmp_path, tiny_folder):  # noqa: F811
    """The trainer opens its base like the backends do: a ``base_path`` relative to the adapter's folder,
    and a tokenizer that gained tokens (the adapter saved the grown embeddings)."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    runs = tmp_path / "runs"
    shutil.copytree(tiny_folder, runs / "base")
    tok = make_tokenizer()
    vocab = len(tok)
    tok.add_special_tokens({"additional_special_tokens": ["[Retrieval]", "[No Retrieval]"]})
    model = AutoModelForCausalLM.from_pretrained(str(tiny_folder))
    model.resize_token_embeddings(len(tok))
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                     modules_to_save=["embed_tokens", "lm_head"])
    adapter = runs / "sft" / "model"
    get_peft_model(model, cfg).save_pretrained(str(adapter))
    tok.save_pretrained(str(adapter))
    write_trained(adapter, TrainedModel(base="tiny-llama", base_path=Path("../../base"), adapter=True))

    p = SFTParams(lora={"r": 4, "alpha": 8}, max_steps=1, max_length=64)
    _, ctx, out = run(p, [chat("hello there", "hi friend", 0)], adapter, tmp_path / "next")
    assert out[0]["sequences"] == 1
    out_dir = ctx.artifact_dir / "model"
    assert read_trained(out_dir).adapter is False  # a new adapter over a merged adapter is saved merged
    weights = load_file(str(out_dir / "model.safetensors"))
    assert weights["model.embed_tokens.weight"].shape[0] == vocab + 2
