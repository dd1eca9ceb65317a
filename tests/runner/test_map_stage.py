"""One map stage run on its own: batches, write-ahead log, resume, shards, retries, failures ledger."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from components.base import Failed, MapComponent
from runner.map_stage import MapStageRun, ShardDone, encode, map_port, shard_name, unique_keys
from runner.schema import StageSpec


class Upper(MapComponent):
    """Upper-cases ``text``; a record whose text is in ``flaky`` fails (retryably) that many more times;
    a batch holding ``boom`` raises; ``drop`` gives no output."""

    batch_size = 2

    def __init__(self, flaky: dict[str, int] | None = None) -> None:
        super().__init__()
        self.flaky = dict(flaky or {})
        self.calls: list[list[str]] = []

    def process(self, batch, ctx):
        self.calls.append([r["id"] for r in batch])
        if any(r["text"] == "boom" for r in batch):
            raise ValueError("boom")
        out = []
        for r in batch:
            if self.flaky.get(r["text"], 0) > 0:
                self.flaky[r["text"]] -= 1
                out.append(Failed("bad answer", raw=r["text"]))
            elif r["text"] == "drop":
                out.append([])
            else:
                out.append({**r, "text": r["text"].upper()})
        return out


class Bar:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, n: int = 1, total: int | None = None) -> None:
        self.done += n


def records(*texts: str) -> list[dict]:
    return [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]


def run(tmp_path, comp, recs, spec=None, **kw):
    ctx = SimpleNamespace(artifact_dir=tmp_path)
    spec = spec or StageSpec(type="upper", inputs={"records": "up"})
    bar = Bar()
    return MapStageRun(comp, "s", spec, ctx, recs, bar, **kw).run(), bar


def wal(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_unique_keys_number_repeated_content_but_refuse_repeated_ids():
    from runner.map_stage import DuplicateIds

    same = {"text": "no id"}
    keys = unique_keys([{"id": "a"}, same, {"idx": 7}, dict(same), {"id": "b"}])
    assert keys[0] == "a" and keys[2] == "7" and keys[4] == "b" and keys[3] == keys[1] + "#1"
    with pytest.raises(DuplicateIds, match=r"records #1 and #3 of the input both have id 'a'"):
        unique_keys([{"id": "a"}, {"id": "b"}, {"id": "a"}])
    with pytest.raises(DuplicateIds, match=r"records #2 and #3 of the input both have idx '4'"):
        unique_keys([{"idx": 3}, {"idx": 4}, {"idx": "4"}])


def test_a_map_stage_with_duplicate_ids_fails_before_any_record(tmp_path):
    from runner.errors import StageFailure

    comp = Upper()
    with pytest.raises(StageFailure, match=r"stage 's': records #2 and #4 of the input both have id 'x'"):
        run(tmp_path, comp, [{"id": "w", "text": "a"}, {"id": "x", "text": "b"}, {"id": "y", "text": "c"},
                             {"id": "x", "text": "d"}])
    assert comp.calls == [] and not (tmp_path / "wal.jsonl").exists()


def test_shard_names():
    assert shard_name("wal", None) == "wal.jsonl"
    assert shard_name("calls", (1, 3)) == "calls.shard1of3.jsonl"


def test_encode_outcomes():
    assert encode({"a": 1}) == {"out": [{"a": 1}]}
    assert encode([]) == {"out": []}
    assert encode(Failed("no", raw="x")) == {"failed": {"error": "no", "raw": "x"}}
    assert encode(KeyError("k")) == {"failed": {"error": "KeyError: 'k'", "raw": None}}
    assert encode(3)["failed"]["error"] == "component returned int, expected dict, list or Failed"


def test_map_port_needs_one_input_or_map_over():
    from runner.errors import StageFailure

    assert map_port(Upper(), StageSpec(type="u", inputs={"records": "a"}), "s") == "records"
    with pytest.raises(StageFailure, match="maps over one input"):
        map_port(Upper(), StageSpec(type="u", inputs={"a": "x", "b": "y"}), "s")


def test_batches_write_one_log_line_each_and_output_keeps_input_order(tmp_path):
    comp = Upper()
    out, bar = run(tmp_path, comp, records("a", "b", "drop", "d", "e"))
    assert comp.calls == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert [r["text"] for r in out.records] == ["A", "B", "D", "E"]
    assert out.failures == []
    assert out.counts == {"in": 5, "out": 4, "failed": 0, "dropped": 1}
    assert [sorted(e["items"]) for e in wal(tmp_path / "wal.jsonl")] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert bar.done == 5


def test_resume_skips_logged_records(tmp_path):
    (tmp_path / "wal.jsonl").write_text(json.dumps({"items": {"r0": {"out": [{"id": "r0", "text": "logged"}]},
                                                              "r1": {"out": []}}}) + "\n" + '{"items": {"r2"')
    comp = Upper()
    out, bar = run(tmp_path, comp, records("a", "b", "c"))
    assert comp.calls == [["r2"]]  # the torn line was cut: r2 runs again
    assert [r["text"] for r in out.records] == ["logged", "C"]
    assert bar.done == 3


def test_failed_records_are_retried_alone_then_ledgered(tmp_path):
    comp = Upper(flaky={"b": 1, "c": 5})
    out, _ = run(tmp_path, comp, records("a", "b", "c"), StageSpec(type="u", inputs={"r": "x"}, retries=2))
    # batch [r0 r1]: r1 fails, one retry succeeds; batch [r2]: fails, two retries fail too
    assert comp.calls == [["r0", "r1"], ["r1"], ["r2"], ["r2"], ["r2"]]
    assert [r["text"] for r in out.records] == ["A", "B"]
    assert out.failures == [{"stage": "s", "record_id": "r2", "error": "bad answer", "raw": "c"}]
    assert out.counts == {"in": 3, "out": 2, "failed": 1, "dropped": 0}


def test_a_batch_that_raises_gives_each_record_a_try_alone_plus_its_retries(tmp_path):
    comp = Upper()
    out, _ = run(tmp_path, comp, records("a", "boom"), StageSpec(type="u", inputs={"r": "x"}, retries=1))
    assert comp.calls == [["r0", "r1"], ["r0"], ["r1"], ["r1"]]
    assert [f["record_id"] for f in out.failures] == ["r1"] and out.failures[0]["error"] == "ValueError: boom"


def test_retry_failed_runs_only_the_ledgered_records_again(tmp_path):
    run(tmp_path, Upper(flaky={"b": 9}), records("a", "b", "c"), StageSpec(type="u", inputs={"r": "x"}, retries=0))
    comp = Upper()
    out, _ = run(tmp_path, comp, records("a", "b", "c"), retry_failed=True, revision=1)
    assert comp.calls == [["r1"]]
    assert [r["text"] for r in out.records] == ["A", "B", "C"] and out.failures == []


def test_a_shard_runs_its_own_batches_into_its_own_log(tmp_path):
    comp = Upper()
    with pytest.raises(ShardDone) as e:
        run(tmp_path, comp, records("a", "b", "c", "d", "e"), shard=(1, 2))
    assert comp.calls == [["r2", "r3"]]
    assert (e.value.done, e.value.total) == (2, 5)
    assert not (tmp_path / "wal.jsonl").exists() and (tmp_path / "wal.shard1of2.jsonl").exists()
    # an unsharded run takes the shard's records from its log and does the rest
    comp = Upper()
    out, _ = run(tmp_path, comp, records("a", "b", "c", "d", "e"))
    assert comp.calls == [["r0", "r1"], ["r4"]]
    assert [r["text"] for r in out.records] == ["A", "B", "C", "D", "E"]


def test_concurrent_batches_give_the_same_output(tmp_path):
    comp = Upper()
    spec = StageSpec(type="u", inputs={"r": "x"}, batch_size=1, concurrency=4)
    out, _ = run(tmp_path, comp, records(*"abcdefgh"), spec)
    assert sorted(c[0] for c in comp.calls) == [f"r{i}" for i in range(8)]
    assert [r["text"] for r in out.records] == list("ABCDEFGH")
