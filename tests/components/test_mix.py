"""data.mix: counts, ratios, replacement, seeding and the `source` field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.selectors.mix import Mix, MixParams
from tests.fakes import FakeCtx

LONG = [{"id": f"L{i}", "messages": [{"role": "user", "content": f"long {i}"}]} for i in range(10)]
SHORT = [{"id": f"S{i}", "messages": [{"role": "user", "content": f"short {i}"}]} for i in range(20)]


def run(tmp_path, seed: int = 0, long=LONG, short=SHORT, **params) -> list[dict]:
    return list(Mix(MixParams(**params)).run({"long": long, "short": short}, FakeCtx(tmp=tmp_path, seed=seed)))


def by_source(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"long": [], "short": []}
    for r in records:
        out[r["source"]].append(r)
    return out


def test_counts_take_that_many_distinct_records_from_each_side(tmp_path):
    out = run(tmp_path, long_count=4, short_count=6)
    parts = by_source(out)
    assert len(parts["long"]) == 4 and len(parts["short"]) == 6
    assert len({r["id"] for r in out}) == 10
    assert all(r["id"].startswith("L") for r in parts["long"])
    assert all(r["id"].startswith("S") for r in parts["short"])
    # records are the input records plus `source`
    originals = {r["id"]: r for r in LONG + SHORT}
    assert all({k: v for k, v in r.items() if k != "source"} == originals[r["id"]] for r in out)


def test_default_keeps_everything(tmp_path):
    parts = by_source(run(tmp_path))
    assert len(parts["long"]) == 10 and len(parts["short"]) == 20


def test_short_ratio_adds_short_records_to_all_long(tmp_path):
    # 10 long, 25% short: 10 * 0.25 / 0.75 = 3.33 -> 3 short records
    parts = by_source(run(tmp_path, short_ratio=0.25))
    assert (len(parts["long"]), len(parts["short"])) == (10, 3)


def test_short_ratio_with_total(tmp_path):
    # total 8 at 50% short: 4 + 4; total 10 at 30%: 3 short, 7 long
    parts = by_source(run(tmp_path, short_ratio=0.5, total=8))
    assert (len(parts["long"]), len(parts["short"])) == (4, 4)
    parts = by_source(run(tmp_path, short_ratio=0.3, total=10))
    assert (len(parts["long"]), len(parts["short"])) == (7, 3)


def test_asking_for_more_than_available_fails_unless_with_replacement(tmp_path):
    with pytest.raises(ValueError, match="asked for 12 records from 'long' but it has 10"):
        run(tmp_path, long_count=12, short_count=0)
    out = run(tmp_path, long_count=12, short_count=0, with_replacement=True)
    assert len(out) == 12
    assert len({r["id"] for r in out}) == 12  # repeated picks get distinct ids
    assert all(r["source"] == "long" for r in out)


def test_seeded(tmp_path):
    a = [r["id"] for r in run(tmp_path, seed=1, long_count=5, short_count=5)]
    b = [r["id"] for r in run(tmp_path, seed=1, long_count=5, short_count=5)]
    c = [r["id"] for r in run(tmp_path, seed=2, long_count=5, short_count=5)]
    assert a == b
    assert a != c


def test_no_shuffle_puts_long_first(tmp_path):
    out = run(tmp_path, shuffle=False)
    assert [r["source"] for r in out] == ["long"] * 10 + ["short"] * 20
    assert [r["id"] for r in out[:10]] == [r["id"] for r in LONG]


def test_same_id_on_both_sides_is_disambiguated(tmp_path):
    out = run(tmp_path, long=[{"id": "x", "t": 1}], short=[{"id": "x", "t": 2}])
    assert sorted(r["id"] for r in out) == ["x", "x-1"]
    assert sorted(r["t"] for r in out) == [1, 2]


@pytest.mark.parametrize(
    "params",
    [
        {"short_ratio": 0.2, "short_count": 3},
        {"total": 10},
        {"total": 10, "short_ratio": 0.2, "long_count": 3},
        {"short_ratio": 1.0},
        {"long_count": -1},
    ],
)
def test_inconsistent_params_are_rejected(params):
    with pytest.raises(ValidationError):
        MixParams(**params)


def test_estimate_and_summary(tmp_path):
    comp = Mix(MixParams(short_ratio=0.5, total=6))
    assert comp.estimate({"long": 10, "short": 20}).records_out == 6
    out = list(comp.run({"long": LONG, "short": SHORT}, FakeCtx(tmp=tmp_path)))
    assert comp.summarize(out, FakeCtx(tmp=tmp_path)) == {"n": 6, "long": 3, "short": 3, "short_share": 0.5}


@pytest.mark.parametrize("params", [{"long_count": 4, "short_count": 6},
                                    {"short_ratio": 0.5, "total": 16, "with_replacement": True},
                                    {"shuffle": False}])
def test_records_files_are_mixed_by_position_as_the_records_themselves_would_be(tmp_path, params):
    import random

    from registry.records import Records, write_records

    write_records(tmp_path / "long.jsonl", LONG)
    write_records(tmp_path / "short.jsonl", SHORT)
    files = {"long": Records(tmp_path / "long.jsonl"), "short": Records(tmp_path / "short.jsonl")}
    got = list(Mix(MixParams(**params)).run(files, FakeCtx(tmp=tmp_path, seed=3)))
    # the draws over the records in memory, with the same seeded RNG
    p, rng = MixParams(**params), random.Random(3)
    k_long, k_short = Mix(p).plan_counts(len(LONG), len(SHORT))
    picked = []
    for src, recs, k in (("long", LONG, k_long), ("short", SHORT, k_short)):
        drawn = recs if k == len(recs) and not p.with_replacement else \
            rng.choices(recs, k=k) if p.with_replacement else rng.sample(recs, k)
        picked += [{**r, "source": src} for r in drawn]
    if p.shuffle:
        rng.shuffle(picked)
    assert [r["id"].split("-")[0] for r in got] == [r["id"] for r in picked]
    assert [r["messages"] for r in got] == [r["messages"] for r in picked]
