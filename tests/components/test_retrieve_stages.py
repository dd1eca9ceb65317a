"""``index.build`` and ``retrieve`` through the runner: the index reused while the corpus and embedder stay
the same, passages from the CPython doc topics, validation errors at the YAML line, embedder prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("usearch")
pytest.importorskip("bm25s")
pytest.importorskip("torch")

from components.loaders.pydoc_topics import LoadPydocTopics  # noqa: E402
from runner.errors import RecipeError  # noqa: E402
from runner.load import load_recipe  # noqa: E402

RECIPE = """recipe: rag
models: {{emb: tiny-random-bert}}
stages:
  docs: {{type: load.pydoc_topics, params: {{topics: [for, while], passage_words: 100}}}}
  index: {{type: index.build, inputs: {{passages: docs}}, models: {{embedder: emb}}}}
  questions: {{type: load.jsonl, params: {{path: q.jsonl}}}}
  hits:
    type: retrieve
    inputs: {{queries: questions, index: index}}
    models: {{embedder: emb}}
    params: {{method: {method}, k: 3}}
"""
QUESTIONS = [{"id": "q1", "question": "How does the for statement iterate over a sequence?"},
             {"id": "q2", "question": "When does a while loop stop?"}]


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "zoo"))
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))

    def write(method: str = "hybrid") -> Path:
        path = tmp_path / "rag.yaml"
        path.write_text(RECIPE.format(method=method))
        return path

    return write


def _run(path: Path, runs: Path, *overrides: str) -> dict:
    from runner.session import run_recipe

    run_recipe(load_recipe(path, overrides=list(overrides)), runs, progress=False, publish=False)
    root = runs / "rag"
    latest = json.loads((root / "latest.json").read_text())["stages"]
    return {s: root / d for s, d in latest.items()}


def test_the_index_is_reused_while_corpus_and_embedder_stay_the_same(recipe, tmp_path, monkeypatch):
    import runner.backends.embed as embed

    embedded: list[str] = []
    real = embed.HFEmbedder.embed

    def counted(self, texts):
        embedded.extend(texts)
        return real(self, texts)

    monkeypatch.setattr(embed.HFEmbedder, "embed", counted)
    path, runs = recipe("hybrid"), tmp_path / "runs"
    first = _run(path, runs)
    passages = [json.loads(line) for line in (first["index"] / "records.jsonl").read_text().splitlines()]
    assert len(embedded) == len(passages) + len(QUESTIONS)
    hits = [json.loads(line) for line in (first["hits"] / "records.jsonl").read_text().splitlines()]
    assert [h["id"] for h in hits] == ["q1", "q2"]
    assert all(len(h["passages"]) == 3 and set(h["passages"][0]) == {"id", "title", "text", "score"} for h in hits)
    assert hits[0]["question"] == QUESTIONS[0]["question"]  # the query record passes through

    _run(path, runs)  # nothing changed: every stage cached, nothing embedded
    assert len(embedded) == len(passages) + len(QUESTIONS)

    second = _run(path, runs, "stages.hits.params.k=2")  # only retrieve runs: the queries are embedded
    assert second["index"] == first["index"] and second["hits"] != first["hits"]
    assert len(embedded) == len(passages) + 2 * len(QUESTIONS)

    third = _run(path, runs, "stages.docs.params.topics=[for]")  # another corpus: a new index
    assert third["index"] != first["index"]
    fewer = sum(1 for _ in (third["index"] / "records.jsonl").open())
    assert len(embedded) == len(passages) + fewer + 3 * len(QUESTIONS)
    metrics = json.loads((third["index"] / "metrics.json").read_text())
    assert metrics["passages"] == fewer and metrics["embedder"] == "tiny-random-bert" and metrics["dim"] == 32


def test_bm25_retrieve_finds_the_topic_the_question_names(recipe, tmp_path):
    out = _run(recipe("bm25"), tmp_path / "runs")
    hits = [json.loads(line) for line in (out["hits"] / "records.jsonl").read_text().splitlines()]
    assert hits[0]["passages"][0]["id"].startswith("for#")
    assert hits[1]["passages"][0]["id"].startswith("while#")
    scores = [p["score"] for p in hits[0]["passages"]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def test_pydoc_topics_cut_into_passages_of_about_100_words():
    from pydoc_data.topics import topics

    words = topics["for"].split()
    comp = LoadPydocTopics(LoadPydocTopics.Params(topics=["for"], passage_words=100))
    out = comp.run({}, None)  # type: ignore[arg-type]
    full, tail = divmod(len(words), 100)
    expected = full + (1 if tail >= 50 else 0) if full else 1
    assert len(out) == expected
    assert [r["id"] for r in out] == [f"for#{i}" for i in range(expected)]
    assert [r["idx"] for r in out] == list(range(expected))
    assert all(len(r["text"].split()) == 100 for r in out[:-1])
    assert 50 <= len(out[-1]["text"].split()) < 150
    assert " ".join(r["text"] for r in out).split() == words  # no word lost or repeated
    assert {r["title"] for r in out} == {'The "for" statement'} and {r["topic"] for r in out} == {"for"}
    assert comp.output_fields() == {"id", "idx", "title", "text", "topic"}
    assert comp.estimate({}).records_out == expected


def test_bad_params_and_wiring_are_reported_at_their_yaml_lines(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("""recipe: bad
stages:
  docs: {type: load.pydoc_topics, params: {topics: [for], passage_words: 0}}
  index: {type: index.build, inputs: {passages: docs}, params: {k1: -1, dense: maybe}}
  questions: {type: load.jsonl, params: {path: q.jsonl}}
  hits:
    type: retrieve
    inputs: {queries: questions, index: questions}
    params:
      method: dens
      k: 0
""")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert f"{path}:3:" in text and "stages.docs.params.passage_words" in text
    assert f"{path}:4:" in text and "stages.index.params.k1" in text and "stages.index.params.dense" in text
    assert f"{path}:10:15: stages.hits.params.method: input should be 'dense', 'bm25' or 'hybrid'" in text
    assert f"{path}:11:10: stages.hits.params.k: input should be greater than or equal to 1" in text
    assert f"{path}:8:" in text and "stage 'questions' (load.jsonl) builds none" in text


def test_index_build_needs_exactly_one_corpus(tmp_path):
    from components.retrievers.stages import IndexBuild

    comp = IndexBuild(IndexBuild.Params(path=str(tmp_path / "c.jsonl")))
    with pytest.raises(ValueError, match=r"exactly one \(both are set\)"):
        comp._corpus({"passages": [{"id": "a", "text": "x"}]})
    with pytest.raises(ValueError, match="exactly one"):
        IndexBuild()._corpus({})


def test_hf_embedder_adds_the_models_query_and_document_prompts(tmp_path, monkeypatch):
    from runner.backends.embed import HFEmbedder

    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}))
    # no `document` prompt: the `passage` one, as sentence-transformers' encode_document picks it
    seen: list[list[str]] = []
    monkeypatch.setattr(HFEmbedder, "embed", lambda self, texts: seen.append(texts))
    emb = HFEmbedder(tmp_path)
    emb.embed_queries(["a"])
    emb.embed_documents(["b"])
    assert seen == [["query: a"], ["passage: b"]]
    plain = HFEmbedder(tmp_path / "none")  # no sentence-transformers config: texts as they are
    plain.embed_queries(["a"])
    assert seen[-1] == ["a"]
