"""``load.pydoc_topics``: long English documents that ship with every Python (no download)."""

from __future__ import annotations

import sys

from pydantic import Field, field_validator, model_validator

from components.base import Context, Estimate, Fields, Params, WholeComponent
from registry.suggest import suggestion


def truncate_paragraphs(text: str, max_chars: int) -> str:
    """The longest run of whole leading paragraphs (``\\n\\n``-separated) within ``max_chars``.

    When even the first paragraph is longer, it is cut at the last whitespace within the limit (or hard at
    the limit when there is none).
    """
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n\n", 0, max_chars + 2)  # a break starting at max_chars still fits
    if cut > 0:
        return text[:cut].rstrip()
    space = max(text.rfind(" ", 0, max_chars + 1), text.rfind("\n", 0, max_chars + 1))
    return text[: space if space > 0 else max_chars].rstrip()


def _title(text: str, name: str) -> str:
    """The topic's heading: its first non-empty line."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return name


class LoadPydocTopics(WholeComponent):
    """Loads the CPython documentation topics (``pydoc_data.topics``) as documents.

    Every Python installation ships these ~80 reference-manual sections (a few hundred to tens of thousands
    of characters each), which makes them offline long-context inputs for tests and demos. Records are
    ``{id: topic name, idx: position of the topic in the sorted topic list, title: its heading,
    context: its text}``. ``max_chars`` truncates at a paragraph boundary; ``min_chars`` then drops short
    texts. With ``limit`` the first topics in name order are kept, or a seeded random choice with
    ``sample: true``. The texts differ between Python versions, so the component version includes it.

    With ``passage_words: N`` each chosen topic is cut into passages of about N words instead (a search
    corpus, as DPR cuts Wikipedia into 100-word passages; see ``components.retrievers.passages``): records
    ``{id: "<topic>#<i>", idx: position in the output, title: the topic's heading, text: the passage,
    topic: the topic name}``.
    """

    type = "load.pydoc_topics"
    version = f"1-py{sys.version_info.major}.{sys.version_info.minor}"
    outputs = Fields("id", "idx", "title", "context")

    class Params(Params):
        min_chars: int = Field(0, ge=0, description="drop topics whose (truncated) text is shorter than this")
        max_chars: int | None = Field(
            None, ge=1, description="truncate each text to at most this many characters, at a paragraph end"
        )
        limit: int | None = Field(None, ge=0, description="keep at most this many topics")
        topics: list[str] | None = Field(
            None, description="these topic names, in this order (default: all topics, sorted by name)"
        )
        sample: bool = Field(
            False, description="with `limit`, choose the topics at random (seeded by the run) instead of the first"
        )
        passage_words: int | None = Field(
            None, ge=1, description="cut each topic into passages of about this many words ({id, idx, title, "
            "text, topic} records) for a search index"
        )

        @field_validator("topics")
        @classmethod
        def _known_topics(cls, names: list[str] | None) -> list[str] | None:
            from pydoc_data.topics import topics

            for name in names or []:
                if name not in topics:
                    raise ValueError(f"unknown pydoc topic {name!r}{suggestion(name, topics, n=1)}")
            return names

        @model_validator(mode="after")
        def _min_below_max(self) -> LoadPydocTopics.Params:
            if self.max_chars is not None and self.min_chars > self.max_chars:
                raise ValueError(f"min_chars ({self.min_chars}) is larger than max_chars ({self.max_chars})")
            return self

    def output_fields(self) -> Fields | None:
        if self.params.passage_words is not None:
            return Fields("id", "idx", "title", "text", "topic")
        return self.outputs

    def _eligible(self) -> list[dict]:
        from pydoc_data.topics import topics

        p = self.params
        order = sorted(topics)
        position = {name: i for i, name in enumerate(order)}
        out = []
        for name in p.topics if p.topics is not None else order:
            text = topics[name].strip()
            if p.max_chars is not None:
                text = truncate_paragraphs(text, p.max_chars)
            if len(text) >= p.min_chars:
                out.append({"id": name, "idx": position[name], "title": _title(text, name), "context": text})
        return out

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        if self.params.passage_words is not None:  # a random choice of topics: unknown until it runs
            return Estimate(records_out=None if self.params.sample else len(self._passages(self._chosen(None))))
        n = len(self._eligible())
        return Estimate(records_out=n if self.params.limit is None else min(n, self.params.limit))

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        records = self._chosen(ctx)
        return records if self.params.passage_words is None else self._passages(records)

    def _chosen(self, ctx: Context | None) -> list[dict]:
        p = self.params
        records = self._eligible()
        if p.limit is None or p.limit >= len(records):
            return records
        if not p.sample or ctx is None:
            return records[: p.limit]
        chosen = set(ctx.rng.sample(range(len(records)), p.limit))
        return [r for i, r in enumerate(records) if i in chosen]

    def _passages(self, topics: list[dict]) -> list[dict]:
        from components.retrievers.passages import split_words

        out = []
        for topic in topics:
            for i, text in enumerate(split_words(topic["context"], self.params.passage_words or 100)):
                out.append({"id": f"{topic['id']}#{i}", "idx": len(out), "title": topic["title"], "text": text,
                            "topic": topic["id"]})
        return out
