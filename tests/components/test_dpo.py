"""DPO on a tiny float32 model: pair tokenization with middle-cut contexts, the loss against a hand
computation, stored reference log-probabilities, exact resume and the trained model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
import torch
import torch.nn.functional as F

from components.trainers.dpo import DPO, DPOParams, stored_ref_logps
from components.trainers.dpo_data import tokenize_pair, tokens_digest
from components.trainers.dpo_ref import RefLogps, reply_logps
from components.trainers.dpo_run import build_trainer
from registry.model_folder import load_causal_lm, read_trained
from tests.components.test_sft_tiny import make_tokenizer, one_torch_thread, resolved, tiny_folder  # noqa: F401
from tests.fakes import FakeCtx

PAIRS = [
    {"id": "a", "prompt": [{"role": "user", "content": "what is two plus three ?"}], "chosen": "five",
     "rejected": "six"},
    {"id": "b", "prompt": "tell me about the sky", "chosen": "the sky is blue", "rejected": "the sea"},
]


def tokens(ids: list[int]) -> list[str]:
    return make_tokenizer().convert_ids_to_tokens(ids)


def test_a_pair_is_the_prompt_and_each_assistant_turn():
    row = tokenize_pair(PAIRS[0], make_tokenizer(), 64)
    assert tokens(row.prompt_ids) == ["<s>", "<|user|>", "what", "is", "two", "plus", "three", "?", "<|end|>",
                                      "<|assistant|>"]
    assert tokens(row.chosen_ids) == ["five", "<|end|>"]  # the end-of-turn marker is learned too
    assert tokens(row.rejected_ids) == ["six", "<|end|>"]


def test_a_long_context_is_cut_in_the_middle_so_question_and_replies_survive():
    from registry.random_model import byte_tokenizer

    tok = byte_tokenizer()  # one token per character, ChatML template
    context = "abcdefghij" * 3
    record = {"prompt": [{"role": "user", "content": context + "\nQ?"}], "context": context,
              "chosen": "yes", "rejected": "no"}
    row = tokenize_pair(record, tok, 40)
    # prompt: <|im_start|> "user\n" [33 characters] <|im_end|> "\n" <|im_start|> "assistant\n" = 52 tokens;
    # chosen: "yes" <|im_end|> "\n" = 5 tokens; 52 + 5 - 40 = 17 too many, so 30 - 17 = 13 context tokens may
    # stay: truncate_middle keeps the first 6 and the last 6
    assert tok.decode(row.prompt_ids) == "<|im_start|>user\nabcdefefghij\nQ?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(row.chosen_ids) == "yes<|im_end|>\n" and tok.decode(row.rejected_ids) == "no<|im_end|>\n"
    assert len(row.prompt_ids) + len(row.chosen_ids) == 39
    assert row.context_cut == 30 - 12 and not row.replies_cut
    # without a context field the longest prompt message is cut (here: all of it); a pair whose prompt
    # alone leaves no room for a reply is dropped
    bare = tokenize_pair({**record, "context": None}, tok, 20)
    assert tok.decode(bare.prompt_ids) == "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(bare.chosen_ids) == "y" and bare.replies_cut
    assert tokenize_pair(record, tok, 19) is None


def hand_logps(model, prompt: list[int], reply: list[int]) -> tuple[float, list[float]]:
    """Sum and per-token log-probabilities of ``reply`` after ``prompt``, one token at a time."""
    per_token = []
    with torch.no_grad():
        for i, token in enumerate(reply):
            logits = model(input_ids=torch.tensor([prompt + reply[:i]])).logits[0, -1]
            per_token.append(float(torch.log_softmax(logits.double(), -1)[token]))
    return sum(per_token), per_token


@pytest.mark.parametrize("loss", [(["sigmoid"], None), (["sigmoid", "sft"], [1.0, 0.3])])
def test_the_loss_of_a_batch_is_the_dpo_formula_on_the_four_log_probabilities(tmp_path, tiny_folder, loss):  # noqa: F811
    loss_type, weights = loss
    beta = 0.5
    rows = [tokenize_pair(r, make_tokenizer(), 64, r["id"]) for r in PAIRS]
    ref = [(-5.0, -7.5), (-12.0, -6.25)]  # any reference numbers: the loss only compares
    p = DPOParams(beta=beta, loss_type=loss_type, loss_weights=weights, per_device_batch_size=2)
    trainer, _, _ = build_trainer(rows, ref, p, resolved(tiny_folder), 0, tmp_path / "ckpt")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    got = float(trainer.compute_loss(trainer.model, batch))

    model = load_causal_lm(tiny_folder, dtype="float32")
    dpo, nll = [], []
    for row, (ref_c, ref_r) in zip(rows, ref):
        pi_c, per_token = hand_logps(model, row.prompt_ids, row.chosen_ids)
        pi_r, _ = hand_logps(model, row.prompt_ids, row.rejected_ids)
        dpo.append(-F.logsigmoid(torch.tensor(beta * ((pi_c - ref_c) - (pi_r - ref_r)), dtype=torch.float64)))
        nll += [-t for t in per_token]
    expected = float(sum(dpo) / len(dpo))
    if "sft" in loss_type:
        expected += 0.3 * sum(nll) / len(nll)  # the chosen replies' mean token loss over the batch
    assert got == pytest.approx(expected, abs=1e-5)


def test_reference_log_probabilities_equal_the_policys_own_before_training(tiny_folder):  # noqa: F811
    rows = [tokenize_pair(r, make_tokenizer(), 64) for r in PAIRS]
    model = load_causal_lm(tiny_folder, dtype="float32")
    for chunk_size in (None, 2):  # full logits, or the output layer two positions at a time
        (c, r), _ = reply_logps(model, rows, chunk_size)
        assert c == pytest.approx(hand_logps(model, rows[0].prompt_ids, rows[0].chosen_ids)[0], abs=1e-4)
        assert r == pytest.approx(hand_logps(model, rows[0].prompt_ids, rows[0].rejected_ids)[0], abs=1e-4)


def test_stored_log_probabilities_must_be_for_the_same_tokens():
    row = tokenize_pair(PAIRS[0], make_tokenizer(), 64, "a")
    stored = {**PAIRS[0], "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0, "ref_tokens": tokens_digest(row)}
    assert stored_ref_logps([stored], [row]) == [(-1.0, -2.0)]
    assert stored_ref_logps([PAIRS[0]], [row]) is None
    with pytest.raises(ValueError, match="computed for other tokens"):
        stored_ref_logps([{**stored, "ref_tokens": "0" * 16}], [row])


def run_dpo(p: DPOParams, pairs: list[dict], folder: Path, tmp: Path, **kw):
    comp = DPO(p)
    ctx = FakeCtx(p, models={("source", "policy"): resolved(folder)}, tmp=tmp, **kw)
    return comp, ctx, comp.run({"pairs": pairs}, ctx)


def with_ref(pairs: list[dict], folder: Path, tmp: Path) -> list[dict]:
    comp = RefLogps(RefLogps.Params(max_length=64))
    ctx = FakeCtx(comp.params, models={("source", "ref"): resolved(folder)}, tmp=tmp)
    return comp.run({"pairs": pairs}, ctx)


def test_training_writes_an_adapter_and_moves_the_implicit_reward(tmp_path, tiny_folder):  # noqa: F811
    pairs = with_ref(PAIRS, tiny_folder, tmp_path / "ref")
    assert [set(r) - set(PAIRS[0]) for r in pairs] == [{"ref_chosen_logps", "ref_rejected_logps", "ref_tokens"}] * 2
    p = DPOParams(max_steps=4, learning_rate=5e-2, max_length=64, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    comp, ctx, history = run_dpo(p, pairs, tiny_folder, tmp_path / "run")
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert history[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)  # stored ref = the policy at step 0
    info = read_trained(ctx.artifact_dir / "model")
    assert info.adapter and info.training.component == "train.dpo" and info.training.steps == 4
    assert not (ctx.artifact_dir / "model" / "ref").exists()  # no copy of the adapter as a reference
    # the trained model prefers the chosen replies more than the reference did
    rows = [tokenize_pair(r, make_tokenizer(), 64) for r in PAIRS]
    trained = reply_logps(load_causal_lm(ctx.artifact_dir / "model", dtype="float32"), rows)
    margins = [(c - r["ref_chosen_logps"]) - (rj - r["ref_rejected_logps"]) for (c, rj), r in zip(trained, pairs)]
    assert sum(margins) > 0
    assert comp.summarize(history, ctx)["final_loss"] == history[-1]["loss"]


class KillAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self):
        from transformers import TrainerCallback

        step = self.step

        class Kill(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    raise KeyboardInterrupt("killed")

        return Kill()


def test_a_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, tiny_folder, monkeypatch):  # noqa: F811
    from safetensors.torch import load_file

    import components.trainers.dpo_run as dpo_run

    pairs = with_ref(PAIRS + [{**PAIRS[0], "id": "c", "chosen": "six", "rejected": "five"}], tiny_folder,
                     tmp_path / "ref")
    p = DPOParams(max_steps=5, learning_rate=5e-2, max_length=64, save_steps=2, lora={"r": 4, "alpha": 8})
    run_dpo(p, pairs, tiny_folder, tmp_path / "a")
    real = dpo_run.train_dpo
    monkeypatch.setattr(dpo_run, "train_dpo", lambda *a, **kw: real(*a, **kw, callbacks=[KillAt(3)()]))
    with pytest.raises(KeyboardInterrupt):
        run_dpo(p, pairs, tiny_folder, tmp_path / "b")
    monkeypatch.setattr(dpo_run, "train_dpo", real)
    assert (tmp_path / "b" / "scratch" / "checkpoints" / "checkpoint-2").is_dir()
    _, _, history = run_dpo(p, pairs, tiny_folder, tmp_path / "b")
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]
    a = load_file(str(tmp_path / "a" / "artifacts" / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "artifacts" / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_trl_hooks_this_trainer_overrides_exist():
    from trl import DPOTrainer

    assert callable(DPOTrainer._prepare_dataset) and callable(DPOTrainer._precompute_ref_logps)


def test_the_pairs_stage_keeps_its_counts(tmp_path, tiny_folder):  # noqa: F811
    out = with_ref(PAIRS, tiny_folder, tmp_path)
    assert json.dumps(out)  # plain JSON records
    assert all(r["ref_chosen_logps"] < 0 and r["ref_rejected_logps"] < 0 for r in out)


def test_changing_beta_reuses_the_stored_reference_log_probabilities(tmp_path, tiny_folder, monkeypatch):  # noqa: F811
    """Two runs of a recipe through the runner: the second, with another beta, trains again but runs no
    forward pass of the reference model (its log-probabilities come from the cached dpo.ref_logps stage)."""
    import components.trainers.dpo_ref as dpo_ref
    from runner.load import load_recipe
    from runner.session import run_recipe

    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "zoo"))
    forwards = []
    real = dpo_ref.reply_logps

    def counted(model, rows, *args, **kwargs):
        hook = model.register_forward_hook(lambda *a: forwards.append(1))
        try:
            return real(model, rows, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(dpo_ref, "reply_logps", counted)
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(f"""recipe: dpo-cache
models: {{tiny: "file://{tiny_folder}"}}
stages:
  pairs: {{type: load.jsonl, params: {{path: pairs.jsonl}}}}
  ref: {{type: dpo.ref_logps, inputs: {{pairs: pairs}}, models: {{ref: tiny}}, params: {{max_length: 64}}}}
  dpo:
    type: train.dpo
    inputs: {{pairs: ref}}
    models: {{policy: tiny}}
    params: {{max_length: 64, max_steps: 2, learning_rate: 0.01, lora: {{r: 4, alpha: 8}}}}
""")

    def run(*overrides: str) -> dict:
        run_recipe(load_recipe(recipe, overrides=list(overrides)), tmp_path / "runs", progress=False, publish=False)
        root = tmp_path / "runs" / "dpo-cache"
        latest = json.loads((root / "latest.json").read_text())["stages"]
        return {s: (d, json.loads((root / d / "manifest.json").read_text())) for s, d in latest.items()}

    first = run()
    assert len(forwards) == 2 * len(PAIRS)  # one forward pass per reply
    second = run("stages.dpo.params.beta=0.5")
    assert len(forwards) == 2 * len(PAIRS), "the reference model ran again"
    assert second["ref"] == first["ref"]  # the same stage folder, served from the cache
    assert second["dpo"][0] != first["dpo"][0] and second["dpo"][1]["status"] == "done"  # trained again
