"""components.text: sentences, the <Ci> view, token chunks, truncation, language, verdicts, cite markup."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from components.text import (
    count_tokens,
    detect_language,
    first_bracket_label,
    last_bracket_label,
    last_bracket_number,
    number_sentences,
    repair_tags,
    split_sentences,
    statement_segments,
    strip_tags,
    token_chunks,
    truncate_middle,
)

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "longcite" / "cof_input_sample.jsonl"


def word_level_tokenizer(words: str):
    """A tiny word-level tokenizer built locally (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0}
    for w in words.split():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok, vocab


# -- sentences -------------------------------------------------------------------------------------------


def test_split_sentences_gives_stripped_sentences_and_their_offsets():
    text = "It rained. We stayed in.  Then it stopped!"
    got = split_sentences(text)
    assert got == [
        {"c_idx": 0, "content": "It rained.", "start_idx": 0, "end_idx": 10},
        {"c_idx": 1, "content": "We stayed in.", "start_idx": 11, "end_idx": 24},
        {"c_idx": 2, "content": "Then it stopped!", "start_idx": 26, "end_idx": 42},
    ]


def test_chinese_end_marks_split_and_stay_on_the_left():
    got = split_sentences("今天下雨。我们去哪？好的")
    assert [(s["content"], s["start_idx"], s["end_idx"]) for s in got] == [
        ("今天下雨。", 0, 5), ("我们去哪？", 5, 10), ("好的", 10, 12)]


def test_mixed_english_and_chinese():
    got = split_sentences("First sentence. 第二句。第三句！")
    assert [s["content"] for s in got] == ["First sentence.", "第二句。", "第三句！"]
    assert [s["start_idx"] for s in got] == [0, 16, 20]


def test_one_piece_falls_back_to_blank_line_paragraphs():
    got = split_sentences("no end mark here\n\nnor here")
    assert [(s["content"], s["start_idx"], s["end_idx"]) for s in got] == [
        ("no end mark here", 0, 16), ("nor here", 18, 26)]


def test_blank_text_has_no_sentences_and_one_sentence_stays_one():
    assert split_sentences("  \n ") == []
    assert [s["content"] for s in split_sentences("  Just one.  ")] == ["Just one."]


def test_trained_punkt_variant_keeps_the_offset_contract():
    text = "The plant opened in 1921. It treats water. It serves the city. The plant grew."
    got = split_sentences(text, trained=True)
    assert [s["content"] for s in got] == [
        "The plant opened in 1921.", "It treats water.", "It serves the city.", "The plant grew."]
    assert all(text[s["start_idx"]:s["end_idx"]] == s["content"] for s in got)


def test_number_sentences_tiles_the_context_with_trailing_whitespace():
    # the reference starts the first piece at its sentence: the two leading spaces are in no piece
    chunks, prompt = number_sentences("  A cat sat. A dog ran.\n\nThe end.")
    assert chunks == [
        {"c_idx": 0, "content": "A cat sat. ", "start_idx": 2, "end_idx": 13},
        {"c_idx": 1, "content": "A dog ran.\n\n", "start_idx": 13, "end_idx": 25},
        {"c_idx": 2, "content": "The end.", "start_idx": 25, "end_idx": 33},
    ]
    assert prompt == "<C0>A cat sat. <C1>A dog ran.\n\n<C2>The end."


def test_number_sentences_of_empty_context():
    assert number_sentences("") == ([], "")


# -- tokens ----------------------------------------------------------------------------------------------


def test_whitespace_fallback_chunks_tile_the_text():
    got = token_chunks("one two  three\nfour five", None, size=2)
    assert [c["content"] for c in got] == ["one two  ", "three\nfour ", "five"]
    assert [(c["start_idx"], c["end_idx"]) for c in got] == [(0, 2), (2, 4), (4, 5)]
    assert [(c["char_start"], c["char_end"]) for c in got] == [(0, 9), (9, 20), (20, 24)]
    assert all(c["total_token"] == 5 and c["token_ids"] is None for c in got)


def test_token_chunks_with_a_word_level_tokenizer():
    tok, vocab = word_level_tokenizer("the cat sat on mat . a dog")
    text = "the cat sat on the mat. a dog"
    got = token_chunks(text, tok, size=3)
    # tokens: the cat sat | on the mat | . a dog
    assert [c["token_ids"] for c in got] == [
        [vocab["the"], vocab["cat"], vocab["sat"]], [vocab["on"], vocab["the"], vocab["mat"]],
        [vocab["."], vocab["a"], vocab["dog"]]]
    assert [c["content"] for c in got] == ["the cat sat ", "on the mat", ". a dog"]
    assert [(c["start_idx"], c["end_idx"], c["total_token"]) for c in got] == [(0, 3, 9), (3, 6, 9), (6, 9, 9)]


def test_token_chunks_with_a_transformers_fast_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok, _ = word_level_tokenizer("alpha beta gamma delta")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    got = token_chunks("alpha  beta\ngamma delta", fast, size=2)
    assert [c["content"] for c in got] == ["alpha  beta\n", "gamma delta"]
    assert count_tokens("alpha beta gamma", fast) == 3


def test_truncate_middle_whitespace_fallback():
    assert truncate_middle("a b c d e f g", None, 4) == "a b f g"
    assert truncate_middle("a b c d", None, 4) == "a b c d"


def test_truncate_middle_decodes_both_halves_with_the_tokenizer():
    tok, _ = word_level_tokenizer("the cat sat on mat")
    # WordLevel decodes with single spaces: head "the cat", tail "the mat", concatenated as they are
    assert truncate_middle("the cat sat on the mat", tok, 4) == "the cat" + "the mat"


def test_real_document_splits_and_chunks_consistently():
    if not SAMPLE.is_file():
        pytest.skip(f"reference data not found at {SAMPLE}")
    context = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])["context"]
    sentences = split_sentences(context)
    assert len(sentences) > 50
    previous_end = 0
    for s in sentences:
        assert s["content"] == s["content"].strip() != ""
        assert context[s["start_idx"]:s["end_idx"]] == s["content"]
        assert s["start_idx"] >= previous_end
        previous_end = s["end_idx"]
    chunks, prompt = number_sentences(context)
    assert "".join(c["content"] for c in chunks) == context[chunks[0]["start_idx"]:]
    assert context[:chunks[0]["start_idx"]].strip() == ""
    assert prompt.count("<C") >= len(sentences)
    words = context.split()
    pieces = token_chunks(context, None, size=128)
    assert len(pieces) == math.ceil(len(words) / 128)
    assert "".join(c["content"] for c in pieces) == context
    assert [len(c["content"].split()) for c in pieces[:-1]] == [128] * (len(pieces) - 1)


# -- language and verdicts -------------------------------------------------------------------------------


def test_detect_language_uses_four_to_one():
    assert detect_language("hello world") == "en"
    assert detect_language("你好世界") == "zh"
    assert detect_language("abcde你") == "en"  # 5 > 4·1
    assert detect_language("abcd你") == "zh"  # 4 is not > 4


def test_bracket_parsers():
    text = "x [[Fully supported]] y [[No support]] z"
    assert first_bracket_label(text) == "Fully supported"
    assert last_bracket_label(text) == "No support"
    assert first_bracket_label("no brackets") is None
    assert last_bracket_number("Rating: [[3]] and later [[ 7.5 of 10]]") == 7.5
    assert last_bracket_number("[[abc]]") is None
    assert last_bracket_number("none") is None


# -- citation markup -------------------------------------------------------------------------------------


def test_repair_tags_fixes_common_mistakes():
    assert repair_tags("< cite>[1]</ cite>") == "<cite>[1]</cite>"
    assert repair_tags("<statement, A.<cite></cite></statement>") == "<statement>A.<cite></cite></statement>"
    assert repair_tags("statement>A.<cite></cite>/statement>") == "<statement>A.<cite></cite></statement>"
    assert repair_tags("<statement><statement>A.<cite></cite></statement>") == \
        "<statement>A.<cite></cite></statement>"


def test_statement_segments_kinds():
    text = ("Intro text here.\n\n<statement>A is b.<cite>[1][2]</cite></statement> "
            "<statement>C.<cite></cite></statement><statement>  <cite>[3]</cite></statement> ok")
    got = statement_segments(text)
    assert got == [
        {"kind": "untagged", "text": "Intro text here.", "cite": None},
        {"kind": "space", "text": "\n\n", "cite": None},
        {"kind": "statement", "text": "A is b.", "cite": "[1][2]"},
        {"kind": "space", "text": " ", "cite": None},
        {"kind": "statement", "text": "C.", "cite": ""},
        {"kind": "space", "text": " ", "cite": None},  # "ok" is 2 characters: not a statement
    ]


def test_statement_without_closing_tag_runs_to_the_next_one():
    got = statement_segments("<statement>A.<cite>[1]</cite><statement>B.<cite>[2]</cite></statement>")
    assert [(s["text"], s["cite"]) for s in got] == [("A.", "[1]"), ("B.", "[2]")]


def test_strip_tags():
    assert strip_tags("<statement>A.<cite>[0-1]</cite></statement> B.") == "A. B."
