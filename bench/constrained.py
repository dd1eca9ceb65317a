"""Constrained decoding on SmolLM2: parse failures and decoding speed, free vs constrained, side by side.

For every kind of reply a shipped component parses (CoF questions, answer, chunk citations, sentence
spans; the LongCite decoder; the LongBench-Cite, LongBench-Chat, needle and llm_score judges), the same
prompts are decoded greedily twice, once free and once with the component's format enforced
(``runner.backends.guidance``), alternating prompt by prompt so both modes see the same machine load.
Each reply goes through the component's own parser; a parse failure is what would fail the record (or,
for the decoder, an answer without a single cited statement). Speed is decoding tokens per second of one
conversation at a time (a batch of one: every generated token is one decoding step): the time to read the
prompt and write the first token, measured once per prompt with a one-token request, is taken off both
modes, so the ratio is the cost of the masks alone. Formats are compiled before timing, as a stage
compiles each once.

    python bench/constrained.py                   # SmolLM2-135M-Instruct from the zoo (pulled if needed)
    python bench/constrained.py --per-kind 1      # quicker

The last line is `name=value` pairs: parse_fail_free, parse_fail_constrained, tokens_per_s_free,
tokens_per_s_constrained (decoding) and slowdown (1 − constrained/free decoding tokens per second over all
replies; the issue's target is below 0.15 on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.decoders.longcite import answer_format, longcite_user_prompt, parse_output  # noqa: E402
from components.generators.cof.chunk_citation import chunk_prompt, citation_format  # noqa: E402
from components.generators.cof.qa_generation import (  # noqa: E402
    ANSWER_FORMAT,
    answer_prompt,
    parse_questions,
    question_prompt,
    questions_format,
)
from components.generators.cof.sentence_citation import NO_SUPPORT, sentence_prompt, spans_format  # noqa: E402
from components.judges.llm_score import LlmScore, parse_score  # noqa: E402
from components.judges.longbench_chat import LongBenchChatJudge  # noqa: E402
from components.judges.longbench_cite import SUPPORT, SUPPORT_FORMAT, SUPPORT_PROMPT, label_parser  # noqa: E402
from components.judges.needle import JUDGE as NEEDLE_PROMPT  # noqa: E402
from components.judges.needle import NeedleJudge  # noqa: E402
from components.selectors.cof_filter import global_spans  # noqa: E402
from components.templates import render  # noqa: E402
from components.text import (  # noqa: E402
    last_bracket_number,
    number_sentences,
    repair_tags,
    split_sentences,
    token_chunks,
)
from runner.backends.base import Format, Sampling  # noqa: E402


@dataclass
class Case:
    kind: str
    conversation: list[dict]
    fmt: Format
    max_new_tokens: int
    parses: Callable[[str], bool]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def cases(records: list[dict], tokenizer, per_kind: int) -> list[Case]:
    """``per_kind`` prompts of every kind, built from the held-out LongCite records."""
    out: list[Case] = []
    chat_judge = LongBenchChatJudge(LongBenchChatJudge.Params(max_new_tokens=48))
    needle_judge = NeedleJudge(NeedleJudge.Params(max_new_tokens=32))
    scorer = LlmScore(LlmScore.Params(max_new_tokens=48))
    for r in records[:per_kind]:
        context, query, reference = r["context"][:2500], r["query"], r["answer"][0]
        out.append(Case("cof_questions", user(question_prompt(context, "generic", "en")), questions_format(), 120,
                        lambda t: bool(parse_questions(t))))
        out.append(Case("cof_answer", user(answer_prompt(context, query)), ANSWER_FORMAT, 120,
                        lambda t: bool(t.strip())))
        answer = " ".join(s["content"] for s in split_sentences(context)[:3])
        snippets = token_chunks(context, tokenizer, 128)[:4]
        out.append(Case("cof_chunk_citation", user(chunk_prompt(snippets, query, answer)),
                        citation_format(answer, split_sentences(answer), len(snippets)), 256,
                        lambda t: "<statement>" in repair_tags(t)))
        sents = split_sentences(context)[:12]
        chunk_sents = [{"c_idx": i, "content": s["content"]} for i, s in enumerate(sents)]
        passages = "".join(f"<C{i}>{s['content']} " for i, s in enumerate(sents)).strip()
        out.append(Case("cof_sentence_citation", user(sentence_prompt(passages, query, reference)),
                        spans_format(len(sents)), 24,
                        lambda t, cs=chunk_sents: bool(global_spans(t, cs)) or NO_SUPPORT in t.lower()))
        chunks, numbered = number_sentences(context)
        out.append(Case("decode_longcite", user(longcite_user_prompt(numbered, query)),
                        answer_format(len(chunks), 160), 160,
                        lambda t, ch=chunks: any(s["citation"] for s in parse_output(t, ch)[0])))
        out.append(Case("judge_longbench_cite", user(render(SUPPORT_PROMPT, {
            "question": query, "statement": reference, "snippets": context[:600]})), SUPPORT_FORMAT, 10,
            lambda t: label_parser(SUPPORT)(t) is not None))
        few_shots = [{"answer": reference, "score": 9}, {"answer": "I do not know.", "score": 1},
                     {"answer": context[:120], "score": 4}]
        record = {"idx": r["idx"], "query": query, "answer": reference, "prediction": answer,
                  "few_shots": few_shots}
        out.append(Case("judge_longbench_chat", chat_judge.build_messages(record, SimpleNamespace(seed=0)),
                        chat_judge.rating_format(), 48, lambda t: last_bracket_number(t) is not None))
        out.append(Case("judge_needle", user(render(NEEDLE_PROMPT, {
            "question": query, "reference": reference, "prediction": answer})),
            needle_judge.rating_format(), 32, lambda t: (last_bracket_number(t) or 0) >= 1))
        out.append(Case("judge_llm_score", user(render(LlmScore.prompts["judge"], {
            "query": query, "response": answer, "scale_min": "1", "scale_max": "10"})),
            scorer.score_format(), 48, lambda t: parse_score(t, 1, 10) is not None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--per-kind", type=int, default=2, help="prompts per reply kind (at most 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    from registry.zoo import Zoo
    from runner.backends import open_llm

    llm = open_llm(Zoo.load([]).resolve(args.model), options={"num_threads": args.threads, "batch_size": 1})
    records = [json.loads(line) for line in (REPO / "recipes/data/longcite/heldout.jsonl").open()]
    todo = cases(records, llm.tokenizer(), args.per_kind)
    llm.chat([user("hi")], Sampling(max_new_tokens=2))  # load the model outside the timings
    for case in todo:  # compile every format once, as a stage does
        llm.check_format(case.fmt)

    def timed(case: Case, sampling: Sampling) -> tuple[str, int, float]:
        t = time.perf_counter()
        result = llm.chat([case.conversation], sampling)[0]
        return result.text, result.usage.completion_tokens, time.perf_counter() - t

    # per kind and mode: [parse failures, decoding tokens (after the first), decoding seconds, replies]
    stats: dict[str, dict[str, list[float]]] = {}
    for case in todo:
        row = stats.setdefault(case.kind, {"free": [0, 0, 0.0, 0], "constrained": [0, 0, 0.0, 0]})
        _, _, first = timed(case, Sampling(max_new_tokens=1))  # prompt + first token
        for mode in ("free", "constrained"):
            sampling = Sampling(max_new_tokens=case.max_new_tokens,
                                format=case.fmt if mode == "constrained" else None)
            text, tokens, elapsed = timed(case, sampling)
            failed, decoded, seconds, n = row[mode]
            row[mode] = [failed + (not case.parses(text)), decoded + max(0, tokens - 1),
                         seconds + max(0.0, elapsed - first), n + 1]

    print(f"{'reply kind':<24}{'n':>3} {'fail free':>10} {'fail constr.':>13} {'tok/s free':>11} "
          f"{'tok/s constr.':>14}")
    totals = {"free": [0, 0, 0.0, 0], "constrained": [0, 0, 0.0, 0]}
    for kind, row in stats.items():
        for mode in totals:
            totals[mode] = [a + b for a, b in zip(totals[mode], row[mode])]
        f, c = row["free"], row["constrained"]
        print(f"{kind:<24}{f[3]:>3} {f[0]:>10} {c[0]:>13} {f[1] / f[2]:>11.1f} {c[1] / c[2]:>14.1f}")
    f, c = totals["free"], totals["constrained"]
    speed_free, speed_constrained = f[1] / f[2], c[1] / c[2]
    print(f"{'all':<24}{f[3]:>3} {f[0]:>10} {c[0]:>13} {speed_free:>11.1f} {speed_constrained:>14.1f}")
    print(f"decoded tokens (after the first): free {f[1]}, constrained {c[1]}; model {args.model}, "
          f"{args.threads} thread(s)")
    print(" ".join([
        f"parse_fail_free={f[0] / f[3]:.3f}", f"parse_fail_constrained={c[0] / c[3]:.3f}",
        f"tokens_per_s_free={speed_free:.2f}", f"tokens_per_s_constrained={speed_constrained:.2f}",
        f"slowdown={1 - speed_constrained / speed_free:.3f}",
    ]))


if __name__ == "__main__":
    main()
