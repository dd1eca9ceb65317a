"""cof.qa_generation: question types and languages, parsing, answers, failures."""

from __future__ import annotations

from collections import Counter

from components.base import Failed
from components.generators.cof.qa_generation import QUESTION_PROMPTS, QAGeneration, parse_questions
from runner.backends.base import ChatResult
from tests.fakes import FakeCtx, ScriptedLLM

EN_DOC = "The river floods every spring. Farmers plant rice after the flood. The harvest comes in autumn."
ZH_DOC = "这条河每年春天都会泛滥。洪水过后农民开始种水稻。秋天是收获的季节。"
FIVE = "1: What floods?\n2: When is rice planted?\n3: When is the harvest?\n4: Who plants rice?\n5: Why?"


def prompt_kind(content: str) -> str:
    """Which instruction a question prompt used (the suffix after the document)."""
    for name, text in QUESTION_PROMPTS.items():
        if content.endswith("\n\n" + text):
            return name
    return "answer"


def reply(messages: list[dict]) -> str:
    content = messages[-1]["content"]
    if prompt_kind(content) != "answer":
        return FIVE
    return "Answer: " + content.rsplit("\n\n", 1)[1]


def run(docs: list[dict], tmp_path, llm=None, seed: int = 0, **params) -> tuple[list, ScriptedLLM]:
    llm = llm or ScriptedLLM(reply)
    comp = QAGeneration(QAGeneration.Params(**params))
    return comp.process(docs, FakeCtx(params=comp.params, models={None: llm}, tmp=tmp_path, seed=seed)), llm


def question_kinds(llm: ScriptedLLM) -> Counter:
    return Counter(prompt_kind(conv[-1]["content"]) for conv, _ in llm.calls
                   if prompt_kind(conv[-1]["content"]) != "answer")


def test_parse_questions():
    assert parse_questions(FIVE) == ["What floods?", "When is rice planted?", "When is the harvest?",
                                     "Who plants rice?", "Why?"]
    assert parse_questions("Here you go:\n1. First?\n2) Second?\n3：第三个？") == ["First?", "Second?", "第三个？"]
    assert parse_questions("In 1.5 million cases nothing happened.") == []
    assert parse_questions("1:\n2: Only this one?") == ["Only this one?"]


def test_record_shape_prompts_and_sampling(tmp_path):
    out, llm = run([{"idx": 7, "context": EN_DOC}], tmp_path)
    record = out[0]
    assert set(record) == {"idx", "query", "answer", "context"}
    assert record["idx"] == 7 and record["context"] == EN_DOC
    assert record["query"] in parse_questions(FIVE)
    assert record["answer"] == "Answer: " + record["query"]
    question_conv, sampling = llm.calls[0]
    assert question_conv[0]["content"].startswith(EN_DOC + "\n\n")
    assert sampling.temperature == 1.0 and sampling.max_new_tokens == 2048
    answer_conv, _ = llm.calls[1]
    assert answer_conv[0]["content"] == EN_DOC + "\n\n" + record["query"]


def test_the_question_is_drawn_uniformly_from_the_parsed_ones(tmp_path):
    out, _ = run([{"idx": i, "context": EN_DOC} for i in range(200)], tmp_path)
    counts = Counter(r["query"] for r in out)
    assert set(counts) == set(parse_questions(FIVE))
    assert all(20 <= c <= 60 for c in counts.values())  # 40 expected each


def test_intended_default_uses_all_four_types_in_the_document_language(tmp_path):
    _, llm = run([{"idx": i, "context": EN_DOC} for i in range(400)], tmp_path)
    kinds = question_kinds(llm)
    assert set(kinds) == {"summarization_en", "multi_hop_en", "generic_en", "information_seeking_en"}
    assert all(60 <= c <= 140 for c in kinds.values())  # 100 expected each
    _, llm = run([{"idx": i, "context": ZH_DOC} for i in range(40)], tmp_path)
    assert all(k.endswith("_zh") for k in question_kinds(llm))


def test_reference_compat_reproduces_the_skewed_draw(tmp_path):
    _, llm = run([{"idx": i, "context": EN_DOC} for i in range(800)], tmp_path, compat="reference")
    kinds = question_kinds(llm)
    by_type = Counter(k.rsplit("_", 1)[0] for k in kinds.elements())
    by_lang = Counter(k.rsplit("_", 1)[1] for k in kinds.elements())
    assert by_type["summarization"] == 0
    assert 340 <= by_type["multi_hop"] <= 460  # 400 expected
    assert 140 <= by_type["generic"] <= 260 and 140 <= by_type["information_seeking"] <= 260
    assert 340 <= by_lang["zh"] <= 460  # English documents asked in Chinese half the time
    _, llm = run([{"idx": i, "context": ZH_DOC} for i in range(40)], tmp_path, compat="reference")
    assert all(k.endswith("_zh") for k in question_kinds(llm))


def test_question_language_and_types_params(tmp_path):
    _, llm = run([{"idx": i, "context": EN_DOC} for i in range(30)], tmp_path, question_language="zh",
                 question_types=["generic"])
    assert set(question_kinds(llm)) == {"generic_zh"}


def test_unparsable_questions_fail_with_the_raw_text(tmp_path):
    llm = ScriptedLLM(lambda m: "I cannot think of questions." if prompt_kind(m[-1]["content"]) != "answer"
                      else "an answer")
    out, llm = run([{"idx": 1, "context": EN_DOC}], tmp_path, llm=llm)
    assert isinstance(out[0], Failed)
    assert out[0].raw == "I cannot think of questions."
    assert len(llm.calls) == 1  # nothing to answer


def test_empty_answer_and_backend_error_fail(tmp_path):
    class Flaky(ScriptedLLM):
        def chat(self, conversations, sampling):
            results = super().chat(conversations, sampling)
            return [ChatResult(error="boom") if "Flood" in c[-1]["content"][:5] else r
                    for c, r in zip(conversations, results)]

    llm = Flaky(lambda m: FIVE if prompt_kind(m[-1]["content"]) != "answer" else "  ")
    out, _ = run([{"idx": 1, "context": "Flood. " + EN_DOC}, {"idx": 2, "context": EN_DOC}], tmp_path, llm=llm)
    assert isinstance(out[0], Failed) and "boom" in out[0].error
    assert isinstance(out[1], Failed) and "empty answer" in out[1].error and out[1].raw == "  "
