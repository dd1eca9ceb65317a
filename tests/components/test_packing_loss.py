"""Packed attention and the weighted loss.

The reference value is computed one sequence at a time with plain cross-entropy: the packed, weighted
loss must equal the mean over sequences of each sequence's mean token loss (paper Eq. 2).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from components.trainers.batching import collate
from components.trainers.loss import row_weights, weighted_loss
from components.trainers.packed_attention import (
    block_causal_mask,
    model_inputs,
    register_varlen_attention,
    segment_loop_varlen,
)
from tests.components.test_sft_tiny import make_model, one_torch_thread  # noqa: F401

X = -100
VOCAB = 40


def make_rows():
    g = torch.Generator().manual_seed(1)
    rows = []
    for n, prompt in [(6, 2), (9, 4), (5, 1), (7, 3)]:
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        rows.append((ids, [X] * prompt + ids[prompt:]))
    return rows


def sequence_mean_loss(model, ids, labels, start=0):
    """One sequence alone: mean CE over its targets; positions start at ``start``."""
    x = torch.tensor([ids])
    pos = torch.arange(start, start + len(ids))[None]
    logits = model(input_ids=x, position_ids=pos).logits[0, :-1]
    target = torch.tensor(labels[1:])
    keep = target != X
    return F.cross_entropy(logits[keep], target[keep])


def packed_loss(model, rows, units, weighting=True, reset=False, attention="mask", world_size=1):
    idx = [i for u in units for i in u]
    n_targets = {i: sum(1 for lab in rows[i][1][1:] if lab != X) for i in idx}
    w = row_weights(idx, n_targets, world_size, weighting)
    batch = collate(rows, units, w, packed=True, pad_id=0, reset_position_ids=reset)
    logits = model(**model_inputs(batch, attention, "cpu")).logits
    return weighted_loss(logits, batch.labels, batch.weights)


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same_grads(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.fixture(scope="module")
def model():
    return make_model(VOCAB, seed=0)


@pytest.fixture(scope="module")
def varlen_model():
    m = make_model(VOCAB, seed=0)
    m.set_attn_implementation(register_varlen_attention(segment_loop_varlen))
    return m


def test_block_causal_mask_by_hand():
    m = block_causal_mask([[0, 2, 5]], 5)[0, 0].int().tolist()
    assert m == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]


def test_packed_weighted_loss_with_reset_positions_equals_mean_of_sequence_means(model):
    rows = make_rows()
    reference = torch.stack([sequence_mean_loss(model, *r) for r in rows]).mean()
    loss = packed_loss(model, rows, [(0, 1, 2, 3)], reset=True)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert_same_grads(
        grads(model, loss), grads(model, torch.stack([sequence_mean_loss(model, *r) for r in rows]).mean())
    )


def test_default_positions_match_the_unpacked_computation_with_the_same_position_ids(model):
    rows = make_rows()
    starts = [0, 6, 15, 20]  # the positions each sequence has inside the pack (not reset)

    def reference():
        return torch.stack([sequence_mean_loss(model, *r, start=s) for r, s in zip(rows, starts)]).mean()

    loss = packed_loss(model, rows, [(0, 1, 2, 3)], reset=False)
    assert loss.item() == pytest.approx(reference().item(), rel=1e-5)
    assert_same_grads(grads(model, loss), grads(model, reference()))


def test_token_mean_without_weighting(model):
    rows = make_rows()
    total, count = 0.0, 0
    for r in rows:
        n = sum(1 for lab in r[1][1:] if lab != X)
        total += sequence_mean_loss(model, *r).item() * n
        count += n
    loss = packed_loss(model, rows, [(0, 1, 2, 3)], weighting=False, reset=True)
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_several_padded_packs_and_data_parallel_ranks_give_the_same_mean(model):
    rows = make_rows()
    reference = torch.stack([sequence_mean_loss(model, *r) for r in rows]).mean().item()
    # one rank, two packs of different length in one padded batch
    assert packed_loss(model, rows, [(0, 1), (2,), (3,)], reset=True).item() == pytest.approx(
        reference, rel=1e-5
    )
    # two ranks: each gets K / (N_i * M) weights over the global batch; DDP averages the two losses
    n_targets = {i: sum(1 for lab in rows[i][1][1:] if lab != X) for i in range(4)}
    w = row_weights(range(4), n_targets, world_size=2, weighting=True)
    per_rank = []
    for units in ([(0, 1)], [(2, 3)]):
        b = collate(rows, units, w, packed=True, pad_id=0, reset_position_ids=True)
        per_rank.append(
            weighted_loss(model(**model_inputs(b, "mask", "cpu")).logits, b.labels, b.weights).item()
        )
    assert sum(per_rank) / 2 == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize("attention", ["mask", "varlen"])
def test_changing_one_sequence_leaves_the_others_logits_unchanged(model, varlen_model, attention):
    net = model if attention == "mask" else varlen_model
    rows = make_rows()
    changed = list(rows)
    changed[1] = ([(t + 5) % VOCAB for t in rows[1][0]], rows[1][1])

    def logits(rs):
        b = collate(rs, [(0, 1, 2, 3)], {}, packed=True, pad_id=0)
        with torch.no_grad():
            return net(**model_inputs(b, attention, "cpu")).logits[0]

    a, b = logits(rows), logits(changed)
    assert not torch.allclose(a[6:15], b[6:15])  # the changed sequence itself does change
    torch.testing.assert_close(a[:6], b[:6], rtol=0, atol=1e-6)
    torch.testing.assert_close(a[15:], b[15:], rtol=0, atol=1e-6)  # sequences after it are untouched


def test_varlen_attention_matches_the_mask(model, varlen_model):
    rows = make_rows()
    for reset in (False, True):
        a = packed_loss(model, rows, [(0, 1), (2, 3)], reset=reset, attention="mask")
        b = packed_loss(varlen_model, rows, [(0, 1), (2, 3)], reset=reset, attention="varlen")
        assert b.item() == pytest.approx(a.item(), rel=1e-5)


# -- packing without loss weighting: each pack's token mean, averaged over packs (paper Eq. 3) ---------------

def _logits_for(losses_by_position: dict[tuple[int, int], float], width: int) -> torch.Tensor:
    """Two-class logits where position (b, t) predicting label 0 has cross-entropy exactly ``loss``:
    CE = log(1 + e^x) for logits [0, x], so x = log(e^loss - 1)."""
    import math

    logits = torch.zeros(2, width, 2)
    for (b, t), loss in losses_by_position.items():
        logits[b, t, 1] = math.log(math.exp(loss) - 1)
    return logits


def test_pack_means_averaged_over_two_packs_of_different_lengths_by_hand():
    from components.trainers.batching import collate
    from components.trainers.loss import pack_weights, step_weights

    # pack A: row 0 with 2 targets; pack B: row 1 (1 target) then row 2 (3 targets); every label is 0
    rows = [([1, 1, 1], [X, 0, 0]), ([1, 1], [X, 0]), ([1, 1, 1, 1], [X, 0, 0, 0])]
    n_targets = {0: 2, 1: 1, 2: 3}
    # per-token losses: A = [1, 3] (mean 2); B = [4] + [0.5, 0.5, 2] (mean 7/4)
    # Eq. 3: (2 + 1.75) / 2 = 1.875 (the step's token mean would be 11/6, Eq. 2 would be (2+4+1)/3)
    losses = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 4.0, (1, 2): 0.5, (1, 3): 0.5, (1, 4): 2.0}
    step = [[[(0,), (1, 2)]]]  # one micro-step, one rank, two packs
    w = step_weights(step, n_targets, world_size=1, weighting=False, packed=True)
    assert w == {0: pytest.approx(1 / 4), 1: pytest.approx(1 / 8), 2: pytest.approx(1 / 8)}
    batch = collate(rows, [(0,), (1, 2)], w, packed=True, pad_id=0)
    assert weighted_loss(_logits_for(losses, 6), batch.labels, batch.weights).item() == pytest.approx(1.875)

    # two processes, one pack each: weights K / (T_u * P) = 1 / T_u, the processes' losses are averaged
    step2 = [[[(0,)], [(1, 2)]]]
    w2 = step_weights(step2, n_targets, world_size=2, weighting=False, packed=True)
    assert w2 == {0: pytest.approx(1 / 2), 1: pytest.approx(1 / 4), 2: pytest.approx(1 / 4)}
    per_rank = []
    for b, unit in enumerate([(0,), (1, 2)]):
        one = collate(rows, [unit], w2, packed=True, pad_id=0)
        logits = _logits_for(losses, 6)[b:b + 1, : one.labels.shape[1]]
        per_rank.append(weighted_loss(logits, one.labels, one.weights).item())
    assert per_rank == [pytest.approx(2.0), pytest.approx(1.75)]
    assert sum(per_rank) / 2 == pytest.approx(1.875)

    # two accumulation micro-steps on one process: the same average
    assert step_weights([[[(0,)]], [[(1, 2)]]], n_targets, 1, False, True) == w
    # a pack without targets weighs nothing and is not counted
    assert pack_weights([(0,), (3,)], {0: 2, 3: 0}, 1) == {0: pytest.approx(1 / 2), 3: 0.0}
    # loss weighting on, or no packing, keep their own weights
    assert step_weights(step, n_targets, 1, True, True) == pytest.approx({0: 1 / 6, 1: 1 / 3, 2: 1 / 9})
    assert step_weights(step, n_targets, 1, False, False) == pytest.approx({0: 1 / 6, 1: 1 / 6, 2: 1 / 6})


@pytest.mark.parametrize("chunk", [None, 3])
def test_pack_means_with_the_model_full_and_chunked_loss(model, chunk):
    from components.trainers.loop import forward_loss
    from components.trainers.loss import step_weights

    rows = make_rows()
    n_targets = {i: sum(1 for lab in rows[i][1][1:] if lab != X) for i in range(4)}
    units = [(0, 1), (2, 3)]
    # by hand: each pack's token mean from the sequences' own mean losses, then the mean of the two packs
    pack_means = []
    for unit in units:
        total = sum(sequence_mean_loss(model, *rows[i]).item() * n_targets[i] for i in unit)
        pack_means.append(total / sum(n_targets[i] for i in unit))
    w = step_weights([[units]], n_targets, 1, weighting=False, packed=True)
    batch = collate(rows, units, w, packed=True, pad_id=0, reset_position_ids=True)
    loss = forward_loss(model, model_inputs(batch, "mask", "cpu"), batch.labels, batch.weights, chunk)
    assert loss.item() == pytest.approx(sum(pack_means) / 2, rel=1e-5)
