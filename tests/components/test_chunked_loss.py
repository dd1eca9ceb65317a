"""The chunked loss equals the full-logits loss, in value and gradients, without the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from components.trainers.loop import forward_loss
from tests.components.test_sft_tiny import make_model, one_torch_thread  # noqa: F401

X = -100


def _batch(vocab: int):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, vocab, (2, 37), generator=g)
    labels = ids.clone()
    labels[0, :5] = X
    labels[1, 30:] = X  # padding at the end of row 1
    weights = torch.where(labels == X, 0.0, 0.25)
    weights[1] *= 2  # rows weigh differently, as under loss weighting
    return ids, labels, weights


def _loss_and_grads(model, ids, labels, weights, chunk):
    model.zero_grad()
    loss = forward_loss(model, {"input_ids": ids}, labels, weights, chunk)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_chunked_equals_full_logits(chunk):
    model = make_model(50).train()
    ids, labels, weights = _batch(50)
    full, g_full = _loss_and_grads(model, ids, labels, weights, None)
    chunked, g_chunk = _loss_and_grads(model, ids, labels, weights, chunk)
    # the definition, by hand: sum over targets of CE(logits_t, label_{t+1}) * weight_{t+1}
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
        ce = F.cross_entropy(logits.reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=X, reduction="none")
        by_hand = (ce.view(2, 36) * weights[:, 1:]).sum()
    assert torch.allclose(full, by_hand, atol=1e-5)
    assert torch.allclose(chunked, full, atol=1e-5)
    for name, g in g_full.items():
        assert torch.allclose(g_chunk[name], g, atol=1e-5), name


def test_chunked_path_never_builds_the_full_logits(monkeypatch):
    """The output layer only ever sees ``chunk`` positions (and the one position logits_to_keep asks for)."""
    model = make_model(50).train()
    ids, labels, weights = _batch(50)
    seen = []
    head = model.get_output_embeddings()
    head.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[1]))
    forward_loss(model, {"input_ids": ids}, labels, weights, 8).backward()
    assert max(seen) <= 8 and 36 not in seen and 37 not in seen


def test_a_batch_of_rows_is_chunked_by_its_positions_over_all_rows():
    """4 rows of 17 tokens with a chunk size of 16: each row is short, but the logits of the batch would be
    4 × 16 = 64 vocabulary-wide vectors, so the head sees 16 // 4 = 4 positions of each row at a time."""
    model = make_model(50).train()
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 50, (4, 17), generator=g)
    labels, weights = ids.clone(), torch.full((4, 17), 0.1)
    full, g_full = _loss_and_grads(model, ids, labels, weights, None)
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda mod, inp, out: seen.append(out.shape[:2]))
    chunked, g_chunk = _loss_and_grads(model, ids, labels, weights, 16)
    handle.remove()
    assert set(seen) == {(4, 1), (4, 4)}  # logits_to_keep=1, then 16 positions in chunks of 4
    assert torch.allclose(chunked, full, atol=1e-5)
    for name, g in g_full.items():
        assert torch.allclose(g_chunk[name], g, atol=1e-5), name
