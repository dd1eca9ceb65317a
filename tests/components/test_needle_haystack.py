"""generate.needle_haystack: the grid, and sentence-boundary insertion with several real tokenizers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from components.generators.needle_haystack import NEEDLE, Linspace, NeedleHaystack, NeedleParams
from tests.fakes import FakeCtx, ScriptedLLM

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"

# where a new sentence may start: after . ! ? (+ closing quote/bracket) and whitespace, or after a blank line
ENDS_SENTENCE = re.compile(r"([.!?][\"')\]]*\s+|\n[ \t]*\n\s*)$")
SENTENCE_STARTS = re.compile(r"[.!?][\"')\]]*\s+|\n[ \t]*\n\s*")


class TokenizerLLM(ScriptedLLM):
    def __init__(self, tok) -> None:
        super().__init__(lambda m: "")
        self._tok = tok

    def tokenizer(self):
        return self._tok


def _corpus() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def word_level():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    extra = [NEEDLE]
    tk.train_from_iterator(
        _corpus() + extra, trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False)
    )
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")


def byte_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=tk)


def smollm2():
    roots = [Path(os.environ["RECIPE_ZOO_HOME"])] if os.environ.get("RECIPE_ZOO_HOME") else []
    roots.append(Path.home() / ".cache" / "recipe-zoo")
    for root in roots:
        if root.is_dir():
            for f in sorted(root.rglob("tokenizer.json")):
                if "smollm2" in str(f).lower():
                    from transformers import PreTrainedTokenizerFast

                    return PreTrainedTokenizerFast(tokenizer_file=str(f))
    pytest.skip("no SmolLM2 tokenizer in the zoo cache ($RECIPE_ZOO_HOME or ~/.cache/recipe-zoo)")


@pytest.fixture(scope="module", params=["word_level", "byte_bpe", "smollm2"])
def tokenizer(request):
    return {"word_level": word_level, "byte_bpe": byte_bpe, "smollm2": smollm2}[request.param]()


def generate(tokenizer, tmp_path, inputs=None, **params) -> list[dict]:
    ctx = FakeCtx(models={None: TokenizerLLM(tokenizer)}, tmp=tmp_path)
    return NeedleHaystack(NeedleParams(**params)).run(inputs or {}, ctx)


def context_of(record: dict, params: NeedleParams) -> str:
    """The context (haystack with needle) inside the prompt, recovered from the message text."""
    content = record["messages"][-1]["content"]
    if params.join_system:
        content = content[len(params.system_prompt) + 1 :]
    head, _, _ = params.user_template.partition("{context}")
    tail = params.user_template.partition("{context}")[2].format(
        question=params.question + params.question_suffix
    )
    assert content.startswith(head) and content.endswith(tail)
    return content[len(head) : len(content) - len(tail)]


def check_insertion(tokenizer, records: list[dict], params: NeedleParams) -> None:
    needle = params.needle
    n_needle = len(tokenizer.encode(needle, add_special_tokens=False))
    for r in records:
        context = context_of(r, params)
        pos = r["needle_char_pos"]
        assert context[pos : pos + len(needle)] == needle
        text = context[:pos] + context[pos + len(needle) :]  # the haystack alone
        depth = r["depth"]
        if depth == 0:
            assert pos == 0
            continue
        if depth == 100:
            assert pos == len(text)
            continue
        assert pos > 0, f"depth {depth}: needle at the start"
        assert ENDS_SENTENCE.search(text[:pos]), (
            f"depth {depth}: needle not at a sentence start: {text[pos - 30 : pos]!r}"
        )
        # the requested point, measured independently: token int(n * d / 100) of the haystack
        n_ctx = r["length"] - params.buffer_tokens - n_needle
        ids = tokenizer.encode(text, add_special_tokens=False)
        target = len(tokenizer.decode(ids[: int(n_ctx * depth / 100)], skip_special_tokens=True))
        lo, hi = sorted((pos, target))
        starts_between = [m.end() for m in SENTENCE_STARTS.finditer(text) if lo < m.end() < hi]
        assert len(starts_between) <= 1, f"depth {depth}: needle {pos} is sentences away from {target}"


DEPTHS = [0, 3, 10, 25, 33, 50, 66, 75, 90, 97, 100]


def test_needle_lands_at_a_sentence_start_near_each_depth(tokenizer, tmp_path):
    params = NeedleParams(lengths=[700, 2500], depths=DEPTHS)
    records = generate(tokenizer, tmp_path, **params.model_dump())
    assert [(r["length"], r["depth"]) for r in records] == [(n, d) for n in (700, 2500) for d in DEPTHS]
    check_insertion(tokenizer, records, params)
    # the needle moves with the depth (the reference's period-token bug pins it to the start)
    for n in (700, 2500):
        positions = [r["needle_char_pos"] for r in records if r["length"] == n]
        assert positions == sorted(positions)
        assert len(set(positions)) >= len(DEPTHS) // 2  # nearby depths may share a sentence start
    for r in records:
        assert abs(r["context_tokens"] - (r["length"] - 200)) <= 3


def test_separate_system_turn_and_custom_text(tmp_path):
    tok = byte_bpe()
    params = NeedleParams(
        lengths=[600],
        depths=[50],
        join_system=False,
        needle="\nThe door code is 4417.\n",
        question="What is the door code?",
        question_suffix="",
        user_template="Document:\n{context}\nQuestion: {question}",
    )
    [r] = generate(tok, tmp_path, **params.model_dump())
    assert [m["role"] for m in r["messages"]] == ["system", "user"]
    assert r["messages"][0]["content"] == params.system_prompt
    assert r["messages"][1]["content"].endswith("\nQuestion: What is the door code?")
    assert r["needle"] == "\nThe door code is 4417.\n" and r["question"] == "What is the door code?"
    check_insertion(tok, [r], params)


def test_joined_prompt_starts_with_system_and_ends_with_question(tmp_path):
    params = NeedleParams(lengths=[600], depths=[50])
    [r] = generate(byte_bpe(), tmp_path, **params.model_dump())
    [msg] = r["messages"]
    assert msg["role"] == "user"
    assert msg["content"].startswith(params.system_prompt + "\n")
    assert msg["content"].endswith(params.question + params.question_suffix)
    assert r["id"] == "needle-600-50"


def test_documents_input_is_the_haystack(tmp_path):
    docs = [
        {"text": f"Fact number {i} is about the colour of boat {i}. It was painted twice."} for i in range(3)
    ]
    params = NeedleParams(lengths=[600], depths=[0, 50, 100])
    tok = byte_bpe()
    records = generate(tok, tmp_path, inputs={"documents": docs}, **params.model_dump())
    context = context_of(records[0], params)
    assert context.startswith(NEEDLE + "Fact number 0 is about")
    # three short documents cannot fill 600 tokens: they repeat, in order
    assert context.count("Fact number 0 is about") >= 2
    assert (
        context.index("Fact number 1 is")
        < context.index("Fact number 2 is")
        < context.index("Fact number 0", 200)
    )
    check_insertion(tok, records, params)


def test_paul_graham_haystack(tmp_path):
    folder = SHARED / "needle"
    if not any(folder.glob("*.txt")):
        pytest.skip(f"reference data not found: {folder}")
    tok = byte_bpe()
    params = NeedleParams(lengths=[1500], depths=[10, 50, 90], haystack_files=[str(folder / "*.txt")])
    records = generate(tok, tmp_path, **params.model_dump())
    first = min(folder.glob("*.txt")).read_text(encoding="utf-8")
    text = context_of(records[0], params).replace(NEEDLE, "")
    assert text[:200] == first[:200]  # files are read in sorted order
    check_insertion(tok, records, params)


def test_default_haystack_without_a_model_tokenizer(tmp_path):
    ctx = FakeCtx(models={None: ScriptedLLM(lambda m: "")}, tmp=tmp_path)  # tokenizer() is None: word split
    records = NeedleHaystack(NeedleParams(lengths=[500], depths=[50])).run({}, ctx)
    from pydoc_data.topics import topics

    first = topics[min(topics)]
    assert first[:100] in records[0]["messages"][0]["content"]
    assert records[0]["needle_char_pos"] > 0


def test_linspace_matches_the_reference_grid():
    # the reference implementation: round(linspace(1000, 60000, 10)) and round(linspace(10, 90, 10))
    assert Linspace(start=1000, stop=60000, num=10).values() == [
        1000,
        7556,
        14111,
        20667,
        27222,
        33778,
        40333,
        46889,
        53444,
        60000,
    ]
    assert Linspace(start=10, stop=90, num=10).values() == [10, 19, 28, 37, 46, 54, 63, 72, 81, 90]
    comp = NeedleHaystack(NeedleParams(lengths={"start": 1000, "stop": 3000, "num": 3}, depths=[0, 50]))
    assert comp.grid() == ([1000, 2000, 3000], [0, 50])
    assert comp.estimate({}).records_out == 6


def test_bad_params(tmp_path):
    with pytest.raises(ValidationError):
        NeedleParams(depths=[120])
    with pytest.raises(ValidationError):
        NeedleParams(user_template="{context} only")
    with pytest.raises(ValueError, match="leaves no room"):
        generate(byte_bpe(), tmp_path, lengths=[210], depths=[50])


def test_paper_profile_uses_the_reference_needle_question_and_essay_folder(tmp_path):
    from runner.load import load_recipe

    loaded = load_recipe(REPO / "recipes" / "longalign.yaml", profile="paper")
    params = loaded.components["needles"].params
    # LongAlign's Needle_test config: needle, retrieval question (the prompt adds the suffix; the judge not)
    assert params.needle == ("\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park "
                             "on a sunny day.\n")
    assert params.question == "What is the best thing to do in San Francisco?"
    assert params.question + params.question_suffix == (
        "What is the best thing to do in San Francisco? Here is the most relevant sentence in the context:")
    assert params.haystack_files == [str(REPO / "recipes" / "data" / "longalign" / "PaulGrahamEssays" / "*.txt")]
    assert loaded.components["needle_scores"].params.compat == "reference"
    # with a user-supplied essay folder the same params build the prompts
    folder = tmp_path / "essays"
    folder.mkdir()
    (folder / "a.txt").write_text("How to start. " * 300, encoding="utf-8")
    (folder / "b.txt").write_text("Why to wait. " * 300, encoding="utf-8")
    chosen = params.model_copy(update={"haystack_files": [str(folder / "*.txt")], "lengths": [400],
                                       "depths": [50]})
    ctx = FakeCtx(models={None: ScriptedLLM(lambda m: "")}, tmp=tmp_path)
    [record] = NeedleHaystack(chosen).run({}, ctx)
    prompt = record["messages"][-1]["content"]
    assert params.needle in prompt and prompt.startswith(params.system_prompt + "\n" + "How to start.")
    assert prompt.endswith("Here is the most relevant sentence in the context:")
    assert record["question"] == "What is the best thing to do in San Francisco?"
