"""Batching plans against examples worked out by hand."""

from __future__ import annotations

import random

import pytest

from components.trainers.batching import (
    collate,
    pack_boundaries,
    pack_rows,
    plan_epoch,
    sorted_groups,
    split_even,
    step_rows,
)
from components.trainers.loss import row_weights

X = -100


def test_greedy_packing_skips_too_long_rows_and_keeps_the_last_pack():
    # max 10: [5,3] (+7 > 10 closes it), 12 skipped, [7,2] (+9 closes), [9] (+4 closes), [4,6] = 10 fits
    lengths = [5, 3, 12, 7, 2, 9, 4, 6]
    res = pack_rows(lengths, max_tokens=10)
    assert res.packs == [[0, 1], [3, 4], [5], [6, 7]]
    assert res.skipped == [2]
    assert res.dropped == []
    assert [pack_boundaries([lengths[i] for i in p]) for p in res.packs] == [
        [0, 5, 8],
        [0, 7, 9],
        [0, 9],
        [0, 4, 10],
    ]


def test_drop_last_pack_gives_the_reference_behaviour():
    res = pack_rows([5, 3, 12, 7, 2, 9, 4, 6], max_tokens=10, drop_last=True)
    assert res.packs == [[0, 1], [3, 4], [5]]
    assert res.dropped == [6, 7]
    assert pack_rows([4, 4], max_tokens=10, drop_last=True).packs == []  # one partial pack: nothing left


def test_row_of_exactly_max_tokens_fills_its_own_pack():
    assert pack_rows([10, 1, 10], max_tokens=10).packs == [[0], [1], [2]]


def test_sorted_groups_use_true_lengths_and_keep_the_remainder():
    lengths = [50, 10, 40, 10, 30, 20, 60]
    groups, remainder = sorted_groups(lengths, group_size=2, seed=3)
    # by hand: sorted (length, index) = 1,3 | 5,4 | 2,0 | 6  -> the longest row forms the smaller last group
    expected = [[1, 3], [5, 4], [2, 0], [6]]
    assert sorted(groups) == sorted(expected)
    assert remainder == 1
    shuffled = list(expected)
    random.Random(3).shuffle(shuffled)
    assert groups == shuffled  # the group order is the seeded shuffle, nothing else


def test_sorted_plan_gives_each_micro_step_one_group_split_over_ranks():
    lengths = [50, 10, 40, 10, 30, 20, 60]
    plan = plan_epoch(lengths, "sorted", seed=3, world_size=2)
    micro = [m for step in plan.steps for m in step]
    groups, _ = sorted_groups(lengths, 2, 3)
    assert [[[u[0] for u in rank] for rank in m] for m in micro] == [[[g[0]], g[1:]] for g in groups]
    # the remainder group [6] leaves rank 1 without a row in its micro-step
    assert [[(6,)], []] in micro
    assert plan.remainder_group == 1
    assert sorted(i for s in plan.steps for i in step_rows(s)) == list(range(7))


def test_naive_plan_covers_every_row_once_with_accumulation():
    plan = plan_epoch([3] * 7, "naive", seed=0, per_device_batch_size=2, gradient_accumulation_steps=2)
    # 7 rows, 2 per micro-step -> micro-steps of 2,2,2,1 -> steps of 2 and 2 micro-steps
    assert [[len(m[0]) for m in s] for s in plan.steps] == [[2, 2], [2, 1]]
    order = list(range(7))
    random.Random(0).shuffle(order)
    assert [i for s in plan.steps for i in step_rows(s)] == order


def test_packed_plan_shuffles_whole_packs():
    lengths = [5, 3, 12, 7, 2, 9, 4, 6]
    plan = plan_epoch(lengths, "packed", seed=1, world_size=2, max_pack_tokens=10)
    units = [u for s in plan.steps for m in s for rank in m for u in rank]
    assert sorted(units) == [(0, 1), (3, 4), (5,), (6, 7)]
    assert plan.skipped_too_long == [2]
    assert all(len(m) == 2 for s in plan.steps for m in s)


def test_split_even():
    assert split_even([(1,), (2,), (3,)], 2) == [[(1,), (2,)], [(3,)]]
    assert split_even([(1,)], 3) == [[(1,)], [], []]


def test_row_weights_by_hand():
    n = {0: 2, 1: 4, 2: 1}
    # weighting: K / (N_i * M) with K = 2, M = 3
    assert row_weights([0, 1, 2], n, world_size=2, weighting=True) == pytest.approx(
        {0: 1 / 3, 1: 1 / 6, 2: 2 / 3}
    )
    # token mean: K / T with T = 7
    assert row_weights([0, 1, 2], n, world_size=2, weighting=False) == pytest.approx(
        {0: 2 / 7, 1: 2 / 7, 2: 2 / 7}
    )


def test_collate_packed_rows_boundaries_positions_labels_weights():
    rows = [([1, 2, 3], [X, 2, 3]), ([4, 5], [X, 5]), ([6, 7, 8, 9], [6, 7, X, 9])]
    w = {0: 0.5, 1: 1.0, 2: 0.25}
    b = collate(rows, [(0, 1), (2,)], w, packed=True, pad_id=0)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    # the first label of every row is masked: it would be predicted from the previous row
    assert b.labels.tolist() == [[X, 2, 3, X, 5], [X, 7, X, 9, X]]
    assert b.weights.tolist() == [[0, 0.5, 0.5, 0, 1.0], [0, 0.25, 0, 0.25, 0]]
    assert b.boundaries == [[0, 3, 5], [0, 4, 5]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert (b.real_tokens, b.padded_tokens) == (9, 1)
    reset = collate(rows, [(0, 1), (2,)], w, packed=True, pad_id=0, reset_position_ids=True)
    assert reset.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]


def test_collate_without_units_gives_a_zero_weight_filler():
    b = collate([([1, 2], [1, 2])], [], {}, packed=False, pad_id=0)
    assert b.input_ids.tolist() == [[0]] and b.labels.tolist() == [[X]] and b.weights.tolist() == [[0.0]]
    assert b.real_tokens == 0
