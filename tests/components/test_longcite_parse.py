"""parse_citations / parse_output: the reference post-processing of LongCite answers, edge cases included.

Every expectation below was worked out by hand from the reference's reading rules (left-to-right scan for
``<statement>`` … ``</statement>``, untagged text > 5 stripped characters, complete cite blocks removed,
``[s-e]`` of ASCII digits, clamp, merge, 3 spans)."""

from __future__ import annotations

import pytest

from components.decoders.longcite import parse_citations
from components.decoders.longcite_parse import parse_output

# five numbered pieces (sentence + whitespace up to the next one), as number_sentences gives them
PIECES = ["Alpha one. ", "Beta two.  ", "Gamma three.\n", "Delta four. ", "Epsilon five."]
STARTS = [0, 11, 22, 35, 47, 60]
CHUNKS = [{"c_idx": i, "content": p, "start_idx": STARTS[i], "end_idx": STARTS[i + 1]}
          for i, p in enumerate(PIECES)]


def cite(s: int, e: int) -> dict:
    return {"start_sentence_idx": s, "end_sentence_idx": e, "start_char_idx": STARTS[s],
            "end_char_idx": STARTS[e + 1], "cite": "".join(PIECES[s:e + 1])}


def spans(output: str) -> list[list[tuple[int, int]]]:
    return [[(c["start_sentence_idx"], c["end_sentence_idx"]) for c in st["citation"]]
            for st in parse_citations(output, CHUNKS)]


# -- untagged text -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("output", ["", "   ", "Hi.", "Hello", "  Hi!  \n", "一二三四五"])
def test_short_or_blank_untagged_text_is_no_statement_but_stays_in_the_answer(output):
    statements, answer = parse_output(output, CHUNKS)
    assert statements == []
    assert answer == output.strip()


def test_untagged_text_longer_than_five_characters_is_an_uncited_statement_as_written():
    statements, answer = parse_output("Hello!", CHUNKS)
    assert statements == [{"statement": "Hello!", "citation": []}]
    assert answer == "<statement>Hello!<cite></cite></statement>"
    # six Chinese characters count as six
    assert parse_citations("一二三四五六", CHUNKS) == [{"statement": "一二三四五六", "citation": []}]
    # whitespace around it is part of the statement
    assert parse_citations("\n  Intro words.  \n", CHUNKS) == [{"statement": "\n  Intro words.  \n", "citation": []}]


def test_untagged_text_keeps_stray_tags_and_cite_blocks_and_gets_no_citations():
    assert parse_citations("Plain answer<cite>[0-0]</cite>", CHUNKS) == [
        {"statement": "Plain answer<cite>[0-0]</cite>", "citation": []}]
    # a closing tag with no opening one is plain text of the untagged stretch
    got = parse_citations("Intro</statement> more<statement>S.<cite>[0-0]</cite></statement>", CHUNKS)
    assert got == [{"statement": "Intro</statement> more", "citation": []},
                   {"statement": "S.", "citation": [cite(0, 0)]}]
    # no tag repair and tags are case-sensitive
    assert parse_citations("<Statement>Big.<cite>[0-0]</cite></Statement>", CHUNKS) == [
        {"statement": "<Statement>Big.<cite>[0-0]</cite></Statement>", "citation": []}]
    assert parse_citations("< statement>Odd.<cite>[0-0]</cite></statement>", CHUNKS) == [
        {"statement": "< statement>Odd.<cite>[0-0]</cite></statement>", "citation": []}]


# -- statements -------------------------------------------------------------------------------------------

def test_statement_text_is_kept_as_written_with_its_whitespace():
    out = " <statement> Alpha. <cite>[0-0]</cite> </statement>\n"
    statements, answer = parse_output(out, CHUNKS)
    assert statements == [{"statement": " Alpha.  ", "citation": [cite(0, 0)]}]
    assert answer == "<statement> Alpha.  <cite>[0-0]</cite></statement>"


def test_text_after_a_cite_block_belongs_to_the_statement():
    assert parse_citations("<statement>A<cite>[0-0]</cite> B</statement>", CHUNKS) == [
        {"statement": "A B", "citation": [cite(0, 0)]}]
    got = parse_citations("<statement>A<cite>[0-0]</cite>B<cite>[1-1]</cite>C</statement>", CHUNKS)
    assert got == [{"statement": "ABC", "citation": [cite(0, 1)]}]  # [0-0][1-1] merge into [0-1]


def test_a_final_unclosed_statement_is_dropped():
    out = "<statement>One.<cite>[0-0]</cite></statement> <statement>Two.<cite>[1-1]</cite>"
    statements, answer = parse_output(out, CHUNKS)
    assert statements == [{"statement": "One.", "citation": [cite(0, 0)]}]
    assert answer == "<statement>One.<cite>[0-0]</cite></statement>"
    # the text before it is still read
    statements, answer = parse_output("Intro text here <statement>never closed<cite>[2-2]</cite>", CHUNKS)
    assert statements == [{"statement": "Intro text here ", "citation": []}]
    assert answer == "<statement>Intro text here <cite></cite></statement>"


def test_an_unclosed_statement_before_a_closed_one_swallows_up_to_that_close():
    got = parse_citations("<statement>A<statement>B<cite>[4-4]</cite></statement>", CHUNKS)
    assert got == [{"statement": "A<statement>B", "citation": [cite(4, 4)]}]


def test_blank_statement_text_with_citations_is_kept():
    assert parse_citations("<statement><cite>[2-3]</cite></statement>", CHUNKS) == [
        {"statement": "", "citation": [cite(2, 3)]}]
    assert parse_citations("<statement> <cite></cite> </statement>", CHUNKS) == [
        {"statement": "  ", "citation": []}]


def test_a_blank_statement_is_skipped_but_its_text_stays():
    statements, answer = parse_output("<statement>One.<cite></cite></statement><statement>   </statement>x",
                                      CHUNKS)
    assert statements == [{"statement": "One.", "citation": []}]
    assert answer == "<statement>One.<cite></cite></statement>   x"
    statements, answer = parse_output("<statement></statement>Some trailing words", CHUNKS)
    assert statements == [{"statement": "Some trailing words", "citation": []}]
    assert answer == "<statement>Some trailing words<cite></cite></statement>"


def test_an_unclosed_cite_stays_in_the_statement_text():
    statements, answer = parse_output("<statement>A<cite>[0-0]</statement>", CHUNKS)
    assert statements == [{"statement": "A<cite>[0-0]", "citation": []}]
    assert answer == "<statement>A<cite>[0-0]<cite></cite></statement>"


def test_rebuilt_answer_keeps_text_between_statements_and_normalises_spans():
    out = ("<statement>A.<cite>[0-0][1-1]</cite></statement>\n\n<statement>B.<cite>[9-9]</cite></statement>"
           " ok.\n\nThe closing words.")
    statements, answer = parse_output(out, CHUNKS)
    assert [s["statement"] for s in statements] == ["A.", "B.", " ok.\n\nThe closing words."]
    assert answer == ("<statement>A.<cite>[0-1]</cite></statement>\n\n<statement>B.<cite></cite></statement>"
                      "<statement> ok.\n\nThe closing words.<cite></cite></statement>")


def test_chinese_statements_and_short_chinese_tail():
    out = "<statement>北京是首都。<cite>[0-0]</cite></statement>这是总结的话。<statement>好<cite>[1-1]</cite></statement>好的。"
    statements, answer = parse_output(out, CHUNKS)
    assert statements == [{"statement": "北京是首都。", "citation": [cite(0, 0)]},
                          {"statement": "这是总结的话。", "citation": []},
                          {"statement": "好", "citation": [cite(1, 1)]}]
    assert answer.endswith("<statement>好<cite>[1-1]</cite></statement>好的。")


# -- citations --------------------------------------------------------------------------------------------

def test_only_ascii_digit_ranges_count():
    assert spans("<statement>X<cite>[3]</cite></statement>") == [[]]
    assert spans("<statement>X<cite>[3][0-0]</cite></statement>") == [[(0, 0)]]
    assert spans("<statement>X<cite>[ 1 - 2 ][1-2 ][1 -2]</cite></statement>") == [[]]
    assert spans("<statement>X<cite>[１-２]</cite></statement>") == [[]]  # full-width digits
    assert spans("<statement>X<cite>[00-01]</cite></statement>") == [[(0, 1)]]
    assert spans("<statement>X<cite>[0-0]\n[2-2]</cite></statement>") == [[(0, 0), (2, 2)]]
    assert spans("<statement>X<cite>[C1-C2]</cite></statement>") == [[]]


def test_a_range_never_spans_two_cite_blocks():
    assert spans("<statement>A<cite>[1-</cite><cite>2]</cite></statement>") == [[]]


def test_skip_clamp_merge_and_the_three_span_cap():
    # n = 5: [5-6] starts past the end, [3-1] is reversed, [3-9] is clamped to the last sentence
    assert spans("<statement>A<cite>[5-6][3-1][3-9]</cite></statement>") == [[(3, 4)]]
    assert spans("<statement>A<cite>[0-9][5-5]</cite></statement>") == [[(0, 4)]]
    assert spans("<statement>A<cite>[1-1][0-0]</cite></statement>") == [[(1, 1), (0, 0)]]
    assert spans("<statement>A<cite>[0-2][1-3]</cite></statement>") == [[(0, 2), (1, 3)]]
    assert spans("<statement>A<cite>[0-1][2-3]</cite></statement>") == [[(0, 3)]]
    assert spans("<statement>A<cite>[0-0][2-2][4-4][1-1]</cite></statement>") == [[(0, 0), (2, 2), (4, 4)]]
    # the cap counts merged spans: five adjacent ranges are one span
    assert spans("<statement>A<cite>[0-0][1-1][2-2][3-3][4-4]</cite></statement>") == [[(0, 4)]]
    # a fourth range that merges into the third still counts
    assert spans("<statement>A<cite>[0-0][2-2][4-4][4-4]</cite></statement>") == [[(0, 0), (2, 2), (4, 4)]]


def test_merged_citation_text_and_character_span():
    got = parse_citations("<statement>A<cite>[1-2][3-9]</cite></statement>", CHUNKS)[0]["citation"]
    assert got == [{"start_sentence_idx": 1, "end_sentence_idx": 4, "start_char_idx": 11, "end_char_idx": 60,
                    "cite": "Beta two.  Gamma three.\nDelta four. Epsilon five."}]


def test_no_chunks_means_no_citations():
    assert parse_citations("<statement>A<cite>[0-0]</cite></statement>", []) == [
        {"statement": "A", "citation": []}]


def test_pieces_with_the_reference_key_names():
    pieces = [{"c_idx": i, "content": p, "start": STARTS[i], "end": STARTS[i + 1]} for i, p in enumerate(PIECES)]
    got = parse_citations("<statement>A<cite>[2-3]</cite></statement>", pieces)
    assert got == [{"statement": "A", "citation": [cite(2, 3)]}]
