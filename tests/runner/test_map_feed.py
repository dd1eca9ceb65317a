"""A map stage tied to the stages around it: fed by an upstream that is still running (its batches are
the ones the whole input would give), handing its finished records on in order, and stopping."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest
from test_map_stage import Bar, Upper, records

from runner.feed import RecordFeed, StageLinks, StageStopped
from runner.map_stage import MapStageRun
from runner.schema import StageSpec

SPEC = StageSpec(type="upper", inputs={"records": "up"})


def stage(tmp_path, comp, links: StageLinks, recs=None, spec=SPEC) -> MapStageRun:
    return MapStageRun(comp, "s", spec, SimpleNamespace(artifact_dir=tmp_path), recs or [], Bar(), links=links)


def feed_later(feed: RecordFeed, parts: list[list[dict]], then_close: bool = True) -> threading.Thread:
    def go() -> None:
        for part in parts:
            time.sleep(0.02)
            feed.extend(part)
        time.sleep(0.1)  # the batches that can be formed run before the end comes
        if then_close:
            feed.close([r for p in parts for r in p])
        else:
            feed.fail()

    t = threading.Thread(target=go)
    t.start()
    return t


def test_a_fed_stage_forms_the_batches_the_whole_input_would(tmp_path):
    recs = records("a", "b", "c", "d", "e")
    feed = RecordFeed("up")
    t = feed_later(feed, [recs[:1], recs[1:4], recs[4:]])
    comp = Upper()
    out = stage(tmp_path, comp, StageLinks(source=feed)).run()
    t.join()
    assert comp.calls == [["r0", "r1"], ["r2", "r3"], ["r4"]]  # batch i is records 2i, 2i+1, as unfed
    assert [r["text"] for r in out.records] == ["A", "B", "C", "D", "E"]
    assert out.counts["in"] == 5


def test_a_fed_stage_stops_when_its_upstream_fails_and_keeps_its_batches(tmp_path):
    recs = records("a", "b", "c")
    feed = RecordFeed("up")
    t = feed_later(feed, [recs], then_close=False)
    with pytest.raises(StageStopped, match="upstream stage 'up' failed"):
        stage(tmp_path, Upper(), StageLinks(source=feed)).run()
    t.join()
    logged = [json.loads(line) for line in (tmp_path / "wal.jsonl").read_text().splitlines()]
    assert [sorted(e["items"]) for e in logged] == [["r0", "r1"]]  # the full batch ran; r2 waited for more


def test_finished_records_are_handed_on_in_input_order(tmp_path):
    sink = RecordFeed("s")
    seen: list[int] = []
    sink.listen(lambda: seen.append(len(sink.records)))
    comp = Upper()
    spec = StageSpec(type="u", inputs={"r": "x"}, batch_size=1, concurrency=4)
    out = stage(tmp_path, comp, StageLinks(sink=sink), records(*"abcdefgh"), spec).run()
    assert [r["text"] for r in sink.records] == list("ABCDEFGH") == [r["text"] for r in out.records]
    assert seen == sorted(seen)  # the handed-on prefix only grows


def test_a_stop_starts_no_further_batch(tmp_path):
    links = StageLinks()

    class StopAfterFirst(Upper):
        def process(self, batch, ctx):
            links.stop.set()  # another stage failed while this batch ran
            return super().process(batch, ctx)

    comp = StopAfterFirst()
    with pytest.raises(StageStopped, match="another stage failed"):
        stage(tmp_path, comp, links, records("a", "b", "c", "d")).run()
    assert comp.calls == [["r0", "r1"]]
