"""The sentence embedder against embeddings pooled by hand from single, unpadded forward passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from registry.resolved import ResolvedModel
from runner.backends import open_embedder

TEXTS = ["the quick brown fox", "a", "citations point to sentences in the source text and more"]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder using the test tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-encoder")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_llama / name).exists():
            shutil.copy(tiny_llama / name, folder / name)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    BertModel(config).save_pretrained(folder)
    return folder


def manual(folder: Path, text: str, mode: str = "mean", limit: int | None = None) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    ids = tok(text)["input_ids"][:limit]
    with torch.no_grad():
        states = model(torch.tensor([ids])).last_hidden_state[0]
    vec = states[0] if mode == "cls" else states.mean(0)
    vec = vec.numpy()
    return vec / np.linalg.norm(vec)


def test_mean_pooled_unit_vectors_match_unpadded_forward(tiny_encoder):
    embedder = open_embedder(ResolvedModel(name="enc", source="file://enc", kind="embed", backend="embed",
                                           path=tiny_encoder), options={"batch_size": 2})
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (3, 24) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, vec in zip(TEXTS, vectors):
        assert np.allclose(vec, manual(tiny_encoder, text), atol=1e-5)
    assert embedder.embed([]).shape == (0, 24)


def test_sentence_transformers_files_set_pooling_and_length(tiny_encoder, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 4}))
    embedder = open_embedder(ResolvedModel(name="st", source="file://st", kind="embed", backend="embed", path=folder))
    vectors = embedder.embed(TEXTS)
    for text, vec in zip(TEXTS, vectors):
        assert np.allclose(vec, manual(folder, text, mode="cls", limit=4), atol=1e-5)


def test_sentence_transformers_folder_embeds_with_its_prompts_where_installed(tiny_encoder, tmp_path):
    """Where sentence-transformers is installed, its model folders embed through it, with the model's
    query and document prompts; the transformers path reads the same prompts and gives the same vectors."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.models import Normalize, Pooling, Transformer

    from runner.backends import embed_st
    from runner.backends.embed import HFEmbedder

    modules = [Transformer(str(tiny_encoder)), Pooling(24, "mean"), Normalize()]
    model = st.SentenceTransformer(modules=modules, prompts={"query": "query: ", "document": "passage: "},
                                   device="cpu")
    folder = tmp_path / "st-model"
    model.save(str(folder))
    assert embed_st.usable(folder) and not embed_st.usable(tiny_encoder)
    via_st, plain = embed_st.STEmbedder(folder), HFEmbedder(folder)
    texts = ["the quick brown fox", "citations point to sentences"]
    q = via_st.embed_queries(texts)
    assert q.shape == (2, 24) and q.dtype == np.float32
    np.testing.assert_allclose(q, plain.embed(["query: " + t for t in texts]), atol=1e-5)
    np.testing.assert_allclose(via_st.embed_documents(texts), plain.embed(["passage: " + t for t in texts]),
                               atol=1e-5)
    np.testing.assert_allclose(plain.embed_queries(texts), q, atol=1e-5)
    np.testing.assert_allclose(via_st.embed(texts), plain.embed(texts), atol=1e-5)
