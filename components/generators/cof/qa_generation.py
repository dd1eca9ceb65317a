"""CoF stage 1: ask a model for questions about a document, keep one, and have it answered."""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.formats import Constrained, constrained
from components.text import detect_language
from runner.backends.base import Format

QuestionType = Literal["summarization", "multi_hop", "generic", "information_seeking"]
QUESTION_TYPES: tuple[str, ...] = ("summarization", "multi_hop", "generic", "information_seeking")

_FORMAT_EN = (" Make the questions varied and spread them over the whole text. Write one question per line "
              "and nothing else, numbered in the form \"1: \", \"2: \", \"3: \", \"4: \", \"5: \".")
_FORMAT_ZH = "问题之间要有差异，并覆盖整篇文本。每行写一个问题，不要写其他内容，编号格式为\"1: \"、\"2: \"、\"3: \"、\"4: \"、\"5: \"。"

QUESTION_PROMPTS: dict[str, str] = {
    "summarization_en": "Based on the text above, write 5 questions that can only be answered by summarizing "
                        "or bringing together information from several parts of the text." + _FORMAT_EN,
    "multi_hop_en": "Based on the text above, write 5 questions that need several steps of reasoning: "
                    "answering each one should require connecting facts found in different places of the "
                    "text." + _FORMAT_EN,
    "generic_en": "Based on the text above, write 5 questions that a reader of this text would naturally "
                  "want to ask about it." + _FORMAT_EN,
    "information_seeking_en": "Based on the text above, write 5 questions that ask for specific facts, "
                              "figures or details stated in the text." + _FORMAT_EN,
    "summarization_zh": "请根据上面的文本，提出5个需要对文本中多个部分的信息进行归纳或整合才能回答的问题。" + _FORMAT_ZH,
    "multi_hop_zh": "请根据上面的文本，提出5个需要多步推理的问题：回答每个问题都要把文本中不同位置的信息联系起来。" + _FORMAT_ZH,
    "generic_zh": "请根据上面的文本，提出5个读者读完后自然会想问的问题。" + _FORMAT_ZH,
    "information_seeking_zh": "请根据上面的文本，提出5个询问文本中具体事实、数字或细节的问题。" + _FORMAT_ZH,
}


def question_prompt(context: str, qtype: str, language: str) -> str:
    """The question request: the document, a blank line, the instruction for ``qtype`` in ``language``."""
    return context + "\n\n" + QUESTION_PROMPTS[f"{qtype}_{language}"]


def answer_prompt(context: str, query: str) -> str:
    """The answer request: the document, a blank line, the question."""
    return context + "\n\n" + query


QUESTION_CHARS = 300  # longest question the format lets a model write


def questions_format(n: int = 5) -> Format:
    """The question list: lines ``1: …`` to ``n: …``, each a question of up to ``QUESTION_CHARS``
    characters that starts with a non-space character, and nothing else."""
    line = r"[^\s][^\n]{0," + str(QUESTION_CHARS - 1) + "}"
    return Format.regex(r"\n".join(f"{k}: {line}" for k in range(1, n + 1)))


# The answer: any text that starts with a non-space character (so it is never blank).
ANSWER_FORMAT = Format.regex(r"[^\s][\s\S]*")


def parse_questions(text: str, n: int = 5) -> list[str]:
    """Questions numbered ``1:`` … ``n:`` in model output, in number order, blanks left out.

    The requested form is ``k: question`` per line; ``k.``/``k)`` followed by a space and a full-width
    colon are accepted too, because small models drift. The question runs to the end of its line.
    """
    found: list[str] = []
    for k in range(1, n + 1):
        match = re.search(rf"(?m)(?:^|(?<=\s))(?<!\d){k}\s*(?::|：|、|[.)](?=\s))[ \t]*(.+?)\s*$", text)
        if match and match.group(1).strip():
            found.append(match.group(1).strip())
    return found


class QAGeneration(MapComponent):
    """CoF stage 1 (LongCite §1.2): generate one question and its answer per document.

    The model is asked for 5 questions of one type (summarization, multi-hop, generic or
    information-seeking) in the document's language, one of the parsed questions is drawn uniformly, and
    the model answers it from the document. Output: ``{idx, query, answer, context}``.

    Default: the intended behaviour — the four types drawn uniformly (or from ``question_types``) and
    questions in the document's language (or ``question_language``). ``compat: reference`` reproduces
    the reference code instead: an if/if/elif slip means summarization is never asked (multi-hop 50%,
    generic 25%, information-seeking 25%), and English documents get the Chinese prompt half the time
    (only while ``question_language`` is ``auto``).

    With ``constrained`` on, both replies are enforced while decoding: the questions as the lines
    ``1: …`` to ``5: …`` and nothing else, the answer as non-blank text.
    """

    type = "cof.qa_generation"
    inputs: ClassVar[dict[str, Fields]] = {"documents": Fields("context")}
    outputs = Fields("query", "answer", "context")
    models: ClassVar[dict[str, ModelSlot]] = {
        "model": ModelSlot("chat", doc="writes the questions and answers (glm-4-0520 in the paper)")}
    prompts: ClassVar[dict[str, str]] = dict(QUESTION_PROMPTS)
    reply_formats: ClassVar[dict[str, str]] = {"questions": "regex", "answer": "regex"}
    batch_size = 4

    class Params(Constrained):
        question_types: list[QuestionType] = Field(list(QUESTION_TYPES), min_length=1, description=(
            "question types drawn uniformly per document (ignored with compat: reference)"))
        question_language: Literal["auto", "en", "zh"] = Field("auto", description=(
            "language of the questions; auto follows the document (detect_language)"))
        compat: Literal["intended", "reference"] = Field("intended", description=(
            "reference: the reference code's skewed draw (no summarization questions, English documents "
            "asked in Chinese half the time)"))
        temperature: float = Field(1.0, ge=0.0, description="sampling temperature of both calls")
        max_new_tokens: int = Field(2048, ge=1, description="length limit of both calls")

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("documents")
        return Estimate(records_out=n, llm_calls=2 * (n or 0))

    def choose(self, context: str, rng: random.Random) -> tuple[str, str]:
        """The question type and language for one document."""
        p = self.params
        language = p.question_language if p.question_language != "auto" else detect_language(context)
        if p.compat == "reference":
            draw = rng.random()
            qtype = "multi_hop" if draw < 0.5 else "generic" if draw < 0.75 else "information_seeking"
            if p.question_language == "auto" and language == "en" and rng.random() < 0.5:
                language = "zh"
            return qtype, language
        return rng.choice(list(p.question_types)), language

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        from runner.backends.base import Sampling

        llm = ctx.model()
        sampling = Sampling(temperature=self.params.temperature, max_new_tokens=self.params.max_new_tokens)
        enforce = constrained(llm, self.params.constrained)
        plans = [self.choose(r["context"], ctx.rng) for r in batch]
        asked = llm.chat([[{"role": "user", "content": question_prompt(r["context"], t, lang)}]
                          for r, (t, lang) in zip(batch, plans)],
                         sampling.model_copy(update={"format": questions_format() if enforce else None}))

        out: list[Out | None] = [None] * len(batch)
        queries: dict[int, str] = {}
        for i, result in enumerate(asked):
            if result.error:
                out[i] = Failed(f"question generation failed: {result.error}")
                continue
            questions = parse_questions(result.text)
            if not questions:
                out[i] = Failed("no numbered questions ('1: …') in the model output", raw=result.text)
                continue
            queries[i] = ctx.rng.choice(questions)

        order = sorted(queries)
        answer_sampling = sampling.model_copy(update={"format": ANSWER_FORMAT if enforce else None})
        answered = llm.chat([[{"role": "user", "content": answer_prompt(batch[i]["context"], queries[i])}]
                             for i in order], answer_sampling) if order else []
        for i, result in zip(order, answered):
            if result.error:
                out[i] = Failed(f"answer generation failed: {result.error}")
            elif not result.text.strip():
                out[i] = Failed("the model gave an empty answer", raw=result.text)
            else:
                record = batch[i]
                out[i] = {**{k: record[k] for k in ("id", "idx") if k in record},
                          "query": queries[i], "answer": result.text.strip(), "context": record["context"]}
        return out  # type: ignore[return-value]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        languages = [detect_language(r["query"]) for r in records]
        return {"records": len(records), "questions_en": languages.count("en"),
                "questions_zh": languages.count("zh")}
