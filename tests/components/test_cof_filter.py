"""cof.filter: global spans, the rebuilt answer, the SFT record and the 20 % rule."""

from __future__ import annotations

from components.decoders.longcite import LONGCITE_INSTRUCTION, LongCiteDecoder
from components.selectors.cof_filter import CoFFilter, global_spans, keep
from tests.fakes import FakeCtx, ScriptedLLM

CONTEXT = "Ants build big nests. Bees make sweet honey. Cats chase small mice."
SENTS = [{"c_idx": 10}, {"c_idx": 11}, {"c_idx": 12}, {"c_idx": 20}, {"c_idx": 21}]


def cited(text: str = "A fact.") -> dict:
    return {"statement": text, "citation": "[0-0]", "chunk_sents": [{"c_idx": 0, "content": "Ants build big nests."}]}


def uncited(text: str = "A remark.") -> dict:
    return {"statement": text, "citation": []}


def refused(text: str = "A claim.") -> dict:
    return {"statement": text, "citation": "No relevant information", "chunk_sents": SENTS[:1]}


def record(statements: list[dict], idx: int = 0) -> dict:
    return {"idx": idx, "query": "What do bees make?", "context": CONTEXT, "statements": statements}


def run(records: list[dict], tmp_path):
    comp = CoFFilter()
    ctx = FakeCtx(params=comp.params, tmp=tmp_path, inputs={"sentences": records})
    out = comp.process(records, ctx)
    return out, comp, ctx


def test_local_ranges_are_clamped_and_mapped_to_global_sentences():
    raw = "[0-1]\n[3-9]\n[5-2]\n[7-8]"
    # [0-1] → 10..11; [3-9] clamps to [3-4] → 20..21; [5-2] and [7-8] end up with s > e
    assert global_spans(raw, SENTS) == [(10, 11), (20, 21)]
    assert global_spans("[0-0][1-1][2-2][3-3]", SENTS) == [(10, 10), (11, 11), (12, 12)]  # first 3 only
    assert global_spans("[1] and [2]", SENTS) == []
    assert global_spans("[0-0]", []) == []


def test_sft_record_has_the_instruction_numbered_document_and_rebuilt_answer(tmp_path):
    statements = [{"statement": "Bees make honey.", "citation": "[0-0]\n[1-9]",
                   "chunk_sents": [{"c_idx": 1, "content": "Bees make sweet honey."},
                                   {"c_idx": 2, "content": "Cats chase small mice."}]},
                  {"statement": "\n\n", "citation": []},
                  uncited("Overall, animals are busy.")]
    out, _, _ = run([record(statements, idx=5)], tmp_path)
    assert out[0] == {"idx": 5, "messages": [
        {"role": "user", "content": LONGCITE_INSTRUCTION + "\n\n[Document Start]\n<C0>Ants build big nests. "
                                    "<C1>Bees make sweet honey. <C2>Cats chase small mice.\n[Document End]"
                                    "\n\nWhat do bees make?"},
        {"role": "assistant", "content": "<statement>Bees make honey.<cite>[1-1][2-2]</cite></statement>\n\n"
                                         "<statement>Overall, animals are busy.<cite></cite></statement>"},
    ]}


def test_the_sft_prompt_is_exactly_what_the_decoder_sends(tmp_path):
    out, _, _ = run([record([cited()])], tmp_path)
    llm = ScriptedLLM(lambda m: "")
    decoder = LongCiteDecoder()
    decoder.process([{"idx": 0, "query": "What do bees make?", "context": CONTEXT}],
                    FakeCtx(params=decoder.params, models={None: llm}, tmp=tmp_path))
    assert llm.calls[0][0] == [out[0]["messages"][0]]


def test_the_twenty_percent_rule(tmp_path):
    cases = {
        "4 statements, none cited": [uncited()] * 3 + [refused()],
        "5 statements, 1 cited (exactly 20 %)": [cited()] + [uncited()] * 4,
        "10 statements, 1 cited": [cited()] + [uncited()] * 9,
        "4 statements, 1 cited": [cited()] + [uncited()] * 3,
        "10 statements, 2 cited": [cited()] * 2 + [uncited()] * 8,
    }
    records = [record(s + [{"statement": "  ", "citation": []}], idx=i) for i, s in enumerate(cases.values())]
    out, comp, ctx = run(records, tmp_path)
    kept = [isinstance(o, dict) for o in out]
    assert kept == [False, True, False, True, True]
    assert all(o == [] for o in out if not isinstance(o, dict))  # dropped on purpose, not failures
    assert comp.summarize([o for o in out if isinstance(o, dict)], ctx) == {
        "kept": 3, "input_records": 5, "dropped_no_citation": 1, "dropped_low_cited_fraction": 1,
        "kept_fraction": 0.6}


def test_keep_decision_function():
    assert keep(4, 0) == "no_citation"
    assert keep(5, 1) is None
    assert keep(9, 1) == "low_cited_fraction"
    assert keep(10, 1) == "low_cited_fraction"
    assert keep(3, 1) is None
    assert keep(15, 3) is None and keep(35, 7) is None  # exactly 20 % at other sizes
