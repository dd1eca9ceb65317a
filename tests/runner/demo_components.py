"""Small user components for runner tests (referenced from recipes as ``demo_components:Class``)."""

from __future__ import annotations

import os
import time

from pydantic import Field

from components.base import Failed, Fields, MapComponent, ModelSlot, Params, WholeComponent
from runner.backends.base import Sampling


class Numbers(WholeComponent):
    """Emits ``n`` records ``{id, text}``."""

    outputs = Fields("id", "text")

    class Params(Params):
        n: int = Field(5, description="how many records")
        path: str | None = Field(None, description="unused; checks path resolution")

    def run(self, inputs, ctx):
        return [{"id": f"r{i}", "text": f"number {i}"} for i in range(self.params.n)]


class Ask(MapComponent):
    """Asks the model about each record's text; fails records whose text contains ``fail_on``."""

    inputs = {"records": Fields("text")}
    outputs = Fields("id", "text", "answer")
    models = {"llm": ModelSlot(kind="chat")}
    prompts = {"ask": "Say something about: {text}"}
    batch_size = 2

    class Params(Params):
        fail_on: str | None = None
        fail_while: str | None = Field(None, description="a file: every record fails while it exists")
        sleep: float = 0.0
        max_new_tokens: int = 8

    def process(self, batch, ctx):
        convs = [[{"role": "user", "content": self.prompts["ask"].format(text=r["text"])}] for r in batch]
        results = ctx.model().chat(convs, Sampling(max_new_tokens=self.params.max_new_tokens))
        if self.params.sleep:
            time.sleep(self.params.sleep)
        out = []
        for r, res in zip(batch, results):
            if self.params.fail_on and self.params.fail_on in r["text"]:
                out.append(Failed("unparsable answer", raw=res.text))
            elif self.params.fail_while and os.path.exists(self.params.fail_while):
                out.append(Failed("the service is down"))
            else:
                out.append({**r, "answer": res.text})
        return out


class Explode(MapComponent):
    """Raises for records whose text contains ``boom`` (exceptions become failures)."""

    inputs = {"records": Fields("text")}
    outputs = Fields("id", "text")

    def process(self, batch, ctx):
        if any("3" in r["text"] for r in batch):
            raise ValueError("cannot handle 3")
        return [dict(r) for r in batch]


class Needs(WholeComponent):
    """Requires a field nobody makes (for record-type checks)."""

    inputs = {"records": Fields("text", "score")}

    def run(self, inputs, ctx):
        return inputs["records"]


class CountRuns(WholeComponent):
    """Appends a line to ``log`` every time it runs (to observe caching)."""

    inputs = {"records": Fields()}

    class Params(Params):
        log_file: str
        tag: str = ""

    def run(self, inputs, ctx):
        with open(self.params.log_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        return [{"id": "n", "n": len(inputs["records"])}]


class Broken(WholeComponent):
    """Raises when it runs, or (``in_summary``) when it summarises its records."""

    inputs = {"records": Fields()}

    class Params(Params):
        in_summary: bool = False

    def run(self, inputs, ctx):
        if not self.params.in_summary:
            raise RuntimeError("broken on purpose")
        return inputs["records"]

    def summarize(self, records, ctx):
        raise RuntimeError("no summary")


class Gush(WholeComponent):
    """Streams ``n`` records of about 1 KB, made as they are asked for; records in ``stats`` how large the
    stage's records file being written already was when the last record was handed over."""

    streams = True
    outputs = Fields("id", "text")

    class Params(Params):
        n: int = Field(3000, description="how many records")

    def run(self, inputs, ctx):
        for i in range(self.params.n):
            yield {"id": f"g{i}", "text": f"{i} " + "x" * 1000}
        partial = [p.stat().st_size for p in ctx.artifact_dir.glob(".records.jsonl.*.tmp")]
        ctx.save_stats("written_before_the_end", {"bytes": sum(partial)})


class Kinds(WholeComponent):
    """Passes its ``records`` on; keeps the Python type of each input it got (a list unless it streams)."""

    inputs = {"records": Fields()}
    passthrough = "records"

    def run(self, inputs, ctx):
        ctx.save_stats("kinds", {port: type(v).__name__ for port, v in inputs.items()})
        return inputs["records"]


class Stamp(MapComponent):
    """Adds ``stamped: true`` to each record (no model)."""

    inputs = {"records": Fields()}
    passthrough = "records"
    outputs = Fields("stamped")

    def process(self, batch, ctx):
        return [{**r, "stamped": True} for r in batch]


class Tally(MapComponent):
    """Writes ``<pid> <id>`` to ``log_file`` for every record it processes (to see who processed what)."""

    inputs = {"records": Fields("text")}
    outputs = Fields("id", "text", "pid")
    batch_size = 2

    class Params(Params):
        log_file: str

    def process(self, batch, ctx):
        with open(self.params.log_file, "a") as f:
            f.write("".join(f"{os.getpid()} {r['id']}\n" for r in batch))
        return [{**r, "pid": os.getpid()} for r in batch]
