"""Self-RAG's passage-choice and record rules (spec §5.3), on hand-written critic verdicts."""

from __future__ import annotations

import pytest

from components.selfrag.assemble import (
    Choice,
    Segment,
    choose_passage,
    final_utility,
    keep_record,
    map_verdict_answer,
    output_text,
)

REL, IRR = "[Relevant]", "[Irrelevant]"
FULL, PART, NOSUP = "[Fully supported]", "[Partially supported]", "[No support / Contradictory]"


class Coins:
    """A scripted random source: ``random()`` returns the given draws in order; ``choice`` records the
    options offered and returns the one at ``pick``. Drawing more than scripted fails the test."""

    def __init__(self, draws=(), pick=0):
        self.draws = list(draws)
        self.pick = pick
        self.offered = None

    def random(self):
        assert self.draws, "a coin was drawn that the rules should not draw"
        return self.draws.pop(0)

    def choice(self, options):
        self.offered = list(options)
        return self.offered[self.pick]


def test_first_fully_supported_relevant_passage_wins_without_a_draw():
    coins = Coins()
    got = choose_passage([IRR, REL, REL, REL], [None, PART, FULL, FULL], coins)
    assert got == Choice(2, REL, FULL)


def test_fully_supported_but_irrelevant_rating_does_not_count():
    # an irrelevant passage has no support rating to use; a stray FULL on it is ignored
    coins = Coins(draws=[0.1])
    got = choose_passage([IRR, REL], [FULL, PART], coins)
    assert got == Choice(1, REL, PART)


def test_partial_support_kept_below_0_7():
    assert choose_passage([REL, REL], [NOSUP, PART], Coins(draws=[0.69])) == Choice(1, REL, PART)


def test_partial_declined_then_no_support_kept_below_0_25():
    coins = Coins(draws=[0.7, 0.24])
    assert choose_passage([REL, REL], [NOSUP, PART], coins) == Choice(0, REL, NOSUP)
    assert coins.draws == []


def test_both_declined_falls_to_a_random_irrelevant_passage():
    coins = Coins(draws=[0.9, 0.5], pick=1)
    got = choose_passage([IRR, REL, IRR, REL], [None, PART, None, NOSUP], coins)
    assert coins.offered == [0, 2]
    assert got == Choice(2, IRR, None)


def test_no_coin_for_a_rule_without_a_passage():
    # no partial passage: the only draw is the no-support one
    coins = Coins(draws=[0.3])
    got = choose_passage([REL, IRR], [NOSUP, None], coins)
    assert got == Choice(1, IRR, None)


def test_nothing_kept_when_all_relevant_and_draws_decline():
    assert choose_passage([REL, REL], [NOSUP, NOSUP], Coins(draws=[0.99])) is None


def test_probabilities_come_from_params():
    assert choose_passage([REL], [PART], Coins(draws=[0.95]), partial_prob=1.0) == Choice(0, REL, PART)
    assert choose_passage([REL], [PART], Coins(draws=[0.0]), partial_prob=0.0) is None


def test_output_text_of_every_segment_kind():
    p1 = {"title": "pass", "text": "pass is a null operation."}
    p2 = {"title": "", "text": "Unrelated text."}
    segments = [
        Segment("pass does nothing.", "passage", p1, Choice(0, REL, FULL)),
        Segment("It is a placeholder.", "continue"),
        Segment("Odd.", "passage", p2, Choice(3, IRR, None)),
        Segment("Thanks.", "none"),
    ]
    assert output_text(segments, "[Utility:4]") == (
        "[Retrieval]<paragraph>pass\npass is a null operation.</paragraph>[Relevant]pass does nothing."
        "[Fully supported][Continue to Use Evidence]It is a placeholder."
        "[Retrieval]<paragraph>\nUnrelated text.</paragraph>[Irrelevant]Odd.[No Retrieval]Thanks.[Utility:4]")
    with pytest.raises(ValueError):
        output_text(segments, "[Utility:6]")


def test_record_rules():
    assert map_verdict_answer("SUPPORTS") == "true" and map_verdict_answer(" REFUTES") == "false"
    assert map_verdict_answer("SUPPORTS the claim") == "SUPPORTS the claim"
    assert final_utility("[Utility:1]", "true") == "[Utility:5]"
    assert final_utility("[Utility:1]", "False") == "[Utility:5]"
    assert final_utility("[Utility:1]", "It is true.") == "[Utility:1]"
    assert final_utility("[Utility:3]", "false") == "[Utility:3]"
    assert keep_record("[Continue to Use Evidence]x[Utility:5]", Coins()) is False
    assert keep_record("[Retrieval]<paragraph>a</paragraph>[Relevant]x[Utility:5]", Coins()) is True
    assert keep_record("[No Retrieval]x[Utility:5]", Coins(draws=[0.39])) is True
    assert keep_record("[No Retrieval]x[Utility:5]", Coins(draws=[0.4])) is False
