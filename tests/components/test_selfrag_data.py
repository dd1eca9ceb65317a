"""``selfrag.generator_data`` and ``selfrag.critic_data`` with a scripted critic."""

from __future__ import annotations

import re
from collections import Counter

from components.selfrag.critic_data import CriticData
from components.selfrag.critic_prompts import INSTRUCTIONS
from components.selfrag.generator_data import GeneratorData
from tests.fakes import FakeCtx, ScriptedLLM

P0 = {"id": "d0", "title": "Integers", "text": "Integer literals are described here.", "score": 3.0}
P1 = {"id": "d1", "title": "pass", "text": "pass can be used as a placeholder.", "score": 2.0}
P2 = {"id": "d2", "title": "pass", "text": "pass is a null operation.", "score": 1.0}


def aspect_of(conv: list[dict]) -> str:
    text = conv[-1]["content"]
    return next(a for a, t in INSTRUCTIONS.items() if text.startswith(t))


def field(conv: list[dict], caption: str) -> str | None:
    m = re.search(rf"^{caption}: (.*)$", conv[-1]["content"], re.M)
    return m.group(1) if m else None


def critic_reply(conv: list[dict]) -> str:
    """The verdicts for the pair about `pass` (see the test), and [No Retrieval] for anything else."""
    aspect = aspect_of(conv)
    task = field(conv, "Task") or field(conv, "Instruction")
    if aspect == "retrieval":
        return "[Retrieval]" if "pass" in task else "[No Retrieval]"
    if aspect == "utility":
        return "[Utility:4]" if "pass" in task else "[Utility:1]"
    if aspect == "relevance":
        return "[Irrelevant]" if "Integer" in conv[-1]["content"] else "[Relevant]"
    if aspect == "support":
        return "[Fully supported]" if "null operation" in conv[-1]["content"] else "[Partially supported]"
    nxt = field(conv, "Next sentence")
    return "[Continue to Use Evidence]" if nxt.startswith("It is") else "[No Retrieval]"


def test_generator_output_follows_the_critic(tmp_path):
    critic = ScriptedLLM(critic_reply)
    comp = GeneratorData(GeneratorData.Params(constrained=True, no_retrieval_keep=1.0))
    pairs = [
        {"id": "q1", "instruction": "What does pass do?",
         "output": "pass does nothing. It is a placeholder. Thanks for asking.", "passages": [P0, P1, P2]},
        {"id": "q2", "instruction": "Is 1 < 2 in Python?", "output": "SUPPORTS", "passages": [P0]},
    ]
    ctx = FakeCtx(comp.params, models={"critic": critic}, tmp=tmp_path)
    out = comp.process(pairs, ctx)
    assert out[0]["output"] == (
        "[Retrieval]<paragraph>pass\npass is a null operation.</paragraph>[Relevant]pass does nothing."
        "[Fully supported][Continue to Use Evidence]It is a placeholder.[No Retrieval]Thanks for asking."
        "[Utility:4]")
    assert out[0]["retrieves"] == 1 and "passages" not in out[0]
    assert out[0]["messages"] == [{"role": "user", "content": "What does pass do?"},
                                  {"role": "assistant", "content": out[0]["output"]}]
    # SUPPORTS → true, one [No Retrieval] segment, [Utility:1] on a true/false item → [Utility:5]
    assert out[1]["output"] == "[No Retrieval]true[Utility:5]"
    asked = Counter(aspect_of(conv) for conv, _ in critic.calls)
    # 2 retrieval + 2 utility; 3 relevance for sentence 0; support only for the 2 relevant passages;
    # 2 multi-sentence questions (sentences 1 and 2)
    assert asked == {"retrieval": 2, "utility": 2, "relevance": 3, "support": 2, "multi_retrieval": 2}
    for conv, sampling in critic.calls:
        if aspect_of(conv) == "multi_retrieval":
            # a relevant passage is in use: the three-way label set is enforced
            assert re.fullmatch(sampling.format.spec, "[Continue to Use Evidence]")
            assert not re.fullmatch(sampling.format.spec, "[Relevant]")


def test_never_retrieving_outputs_are_dropped_at_keep_0(tmp_path):
    comp = GeneratorData(GeneratorData.Params(no_retrieval_keep=0.0))
    ctx = FakeCtx(comp.params, models={"critic": ScriptedLLM(critic_reply)}, tmp=tmp_path)
    out = comp.process([{"id": "q2", "instruction": "Say hi.", "output": "Hi.", "passages": []}], ctx)
    assert out == [[]]


def test_unparsable_critic_reply_fails_the_record(tmp_path):
    comp = GeneratorData(GeneratorData.Params(tries=2))
    ctx = FakeCtx(comp.params, models={"critic": ScriptedLLM(lambda conv: "maybe")}, tmp=tmp_path)
    (failed,) = comp.process([{"id": "q", "instruction": "x", "output": "y", "passages": [P0]}], ctx)
    assert "no retrieval label" in failed.error


def test_multi_sentence_question_without_passage_in_use_has_two_labels(tmp_path):
    # sentence 0 keeps the irrelevant passage, so no passage is in use for sentence 1
    def reply(conv):
        aspect = aspect_of(conv)
        return {"retrieval": "[Retrieval]", "utility": "[Utility:3]", "relevance": "[Irrelevant]",
                "multi_retrieval": "[No Retrieval]"}[aspect]

    critic = ScriptedLLM(reply)
    comp = GeneratorData(GeneratorData.Params(constrained=True))
    ctx = FakeCtx(comp.params, models={"critic": critic}, tmp=tmp_path)
    (rec,) = comp.process([{"id": "q", "instruction": "i", "output": "Alpha is here. Beta is there.", "passages": [P0]}], ctx)
    assert rec["output"] == ("[Retrieval]<paragraph>Integers\nInteger literals are described here.</paragraph>"
                             "[Irrelevant]Alpha is here.[No Retrieval]Beta is there.[Utility:3]")
    (multi,) = [s for c, s in critic.calls if aspect_of(c) == "multi_retrieval"]
    assert not re.fullmatch(multi.format.spec, "[Continue to Use Evidence]")
    assert re.fullmatch(multi.format.spec, "[Retrieval]")


def test_critic_data_questions_labels_downsampling_and_split(tmp_path):
    def reply(conv):
        return {"retrieval": "[Retrieval]", "utility": "[Utility:5]", "relevance": "[Relevant]",
                "support": "[Partially supported]", "multi_retrieval": "[Continue to Use Evidence]"}[aspect_of(conv)]

    labeler = ScriptedLLM(reply)
    comp = CriticData(CriticData.Params(ndocs=2, dev_size=3, batch_size=5))
    pairs = [{"id": f"q{i}", "instruction": f"Question {i}?", "output": "One. Two.", "passages": [P0, P1, P2]}
             for i in range(10)]
    ctx = FakeCtx(comp.params, models={"labeler": labeler}, tmp=tmp_path, seed=3)
    out = comp.run({"pairs": pairs}, ctx)
    tasks = Counter(r["task"] for r in out)
    # per pair: 1 retrieval, 1 multi (sentence 2), 2 relevance, 2x2 support, 1 utility;
    # the 20 [Relevant] relevance items are cut to 14
    assert tasks == {"retrieval": 10, "multi_retrieval": 10, "relevance": 14, "support": 40, "utility": 10}
    assert len(labeler.calls) == 10 * 9
    # `recipe plan` knows only the pair count: one sentence per output (1 + 0 + 2 + 2 + 1 per pair) at least
    assert comp.estimate({"pairs": 10}).llm_calls == 10 * 6
    assert [r["split"] for r in out].count("dev") == 3 and [r["split"] for r in out][:3] == ["dev"] * 3
    assert len({r["id"] for r in out}) == len(out)
    for r in out:
        assert r["messages"][1] == {"role": "assistant", "content": r["output"]}
        assert r["messages"][0]["content"] == f"{r['instruction']}\n\n### Input:\n{r['input']}"
    # the labelling model saw the worked examples before each question
    conv, sampling = labeler.calls[0]
    assert [m["role"] for m in conv[:2]] == ["user", "assistant"] and len(conv) > 1
    metrics = comp.summarize(out, ctx)
    assert metrics["relevant_dropped"] == 6 and metrics["train"] == len(out) - 3


def test_critic_data_cap_and_dropped_unlabelled(tmp_path):
    labeler = ScriptedLLM(lambda conv: "[Relevant]" if aspect_of(conv) == "relevance" else "no idea")
    comp = CriticData(CriticData.Params(aspects=["relevance", "retrieval"], max_per_aspect=4,
                                        relevant_keep=1.0, dev_size=0, tries=1))
    pairs = [{"id": f"q{i}", "instruction": "x", "output": "y", "passages": [P0, P1, P2]} for i in range(3)]
    ctx = FakeCtx(comp.params, models={"labeler": labeler}, tmp=tmp_path)
    out = comp.run({"pairs": pairs}, ctx)
    assert [r["task"] for r in out] == ["relevance"] * 4
    assert comp.summarize(out, ctx)["unlabelled"] == 3
    # 9 relevance questions capped at 4, 3 retrieval questions: the calls made, one try each
    assert comp.estimate({"pairs": 3}).llm_calls == 4 + 3 == len(labeler.calls)
    assert comp.estimate({"pairs": None}).llm_calls == 0


def test_each_sentence_searches_the_index_in_process(tmp_path):
    from components.retrievers import build_index

    corpus = [{"id": "p-pass", "title": "pass", "text": "The pass statement does nothing when executed."},
              {"id": "p-int", "title": "Integers", "text": "Integer literals have no length limit."},
              {"id": "p-other", "title": "Other", "text": "Unrelated words about gardens."}]
    folder = tmp_path / "stage" / "index"
    build_index(corpus, folder, None)  # BM25 only

    class Ctx(FakeCtx):
        def input_artifact(self, port):
            assert port == "index"
            return folder

    def reply(conv):
        return {"retrieval": "[Retrieval]", "utility": "[Utility:5]", "relevance": "[Relevant]",
                "support": "[Fully supported]", "multi_retrieval": "[Retrieval]"}[aspect_of(conv)]

    comp = GeneratorData(GeneratorData.Params(method="bm25", ndocs=1))
    ctx = Ctx(comp.params, models={"critic": ScriptedLLM(reply)}, tmp=tmp_path, inputs={"pairs": [], "index": corpus})
    pair = {"id": "q", "instruction": "Tell me two facts.",
            "output": "The pass statement does nothing. Integer literals have no length limit."}
    (rec,) = comp.process([pair], ctx)
    assert rec["output"] == (
        "[Retrieval]<paragraph>pass\nThe pass statement does nothing when executed.</paragraph>[Relevant]"
        "The pass statement does nothing.[Fully supported]"
        "[Retrieval]<paragraph>Integers\nInteger literals have no length limit.</paragraph>[Relevant]"
        "Integer literals have no length limit.[Fully supported][Utility:5]")


def test_dense_search_of_a_single_query(tmp_path):
    # usearch answers one query with a different result type than a batch
    from components.retrievers import build_index, open_index
    from tests.fakes import BagOfWordsEmbedder

    corpus = [{"id": str(i), "title": "", "text": f"word{i} shared"} for i in range(12)]
    build_index(corpus, tmp_path / "ix", BagOfWordsEmbedder())
    (hits,) = open_index(tmp_path / "ix", BagOfWordsEmbedder()).search(["word3 shared"], 1, "dense", exact=True)
    assert [h["id"] for h in hits] == ["3"]


def test_a_failed_record_does_not_shift_the_next_records_labels(tmp_path):
    def reply(conv):
        aspect = aspect_of(conv)
        broken = "broken" in conv[-1]["content"]
        if aspect == "support":
            return "maybe" if broken else ("[Fully supported]" if "null operation" in conv[-1]["content"]
                                           else "[Partially supported]")
        return {"retrieval": "[Retrieval]", "utility": "[Utility:5]", "relevance": "[Relevant]"}[aspect]

    comp = GeneratorData(GeneratorData.Params(tries=1))
    ctx = FakeCtx(comp.params, models={"critic": ScriptedLLM(reply)}, tmp=tmp_path)
    pairs = [{"id": "a", "instruction": "broken", "output": "X is y.", "passages": [P1, P2]},
             {"id": "b", "instruction": "What does pass do?", "output": "pass does nothing.", "passages": [P1, P2]}]
    failed, rec = comp.process(pairs, ctx)
    assert "support" in failed.error
    assert rec["output"] == ("[Retrieval]<paragraph>pass\npass is a null operation.</paragraph>[Relevant]"
                             "pass does nothing.[Fully supported][Utility:5]")


def test_first_retrieval_always_skips_the_retrieval_question(tmp_path):
    def reply(conv):
        return {"retrieval": "[No Retrieval]", "utility": "[Utility:3]", "relevance": "[Relevant]",
                "support": "[Fully supported]"}[aspect_of(conv)]

    critic = ScriptedLLM(reply)
    comp = GeneratorData(GeneratorData.Params(first_retrieval="always"))
    ctx = FakeCtx(comp.params, models={"critic": critic}, tmp=tmp_path)
    (rec,) = comp.process([{"id": "q", "instruction": "i", "output": "pass does nothing.", "passages": [P2]}], ctx)
    assert rec["output"] == ("[Retrieval]<paragraph>pass\npass is a null operation.</paragraph>[Relevant]"
                             "pass does nothing.[Fully supported][Utility:3]")
    assert "retrieval" not in {aspect_of(c) for c, _ in critic.calls}
