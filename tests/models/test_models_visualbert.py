"""VisualBERT specifics: one token per region, feature checks, the MiniLM-initialised demo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel

from vlprobe.models.base import ModelInput
from vlprobe.models.tokenization import default_text_model_path
from vlprobe.testing.models import build_adapter


def test_each_region_is_one_image_token_in_input_order(tiny_adapters, make_input):
    adapter = tiny_adapters["visualbert"]
    inp = make_input(n_regions=4)
    (ex,) = adapter.encode([inp])
    n_text = int((ex.modality == 0).sum())
    assert ex.region_tokens == [[n_text + i] for i in range(4)]
    # permuting the regions permutes their tokens (no box/position information in VisualBERT)
    order = [2, 0, 3, 1]
    assert inp.region_features is not None
    perm = ModelInput(words=inp.words, region_features=inp.region_features[order])
    (ex_perm,) = adapter.encode([perm])
    torch.testing.assert_close(
        ex_perm.hidden[:, n_text:], ex.hidden[:, n_text:][:, order], atol=1e-5, rtol=0
    )


def test_wrong_feature_dim_is_a_clear_error(tiny_adapters):
    adapter = tiny_adapters["visualbert"]
    bad = ModelInput(words=["a", "dog"], region_features=np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        adapter.encode([bad])


@pytest.fixture(scope="module")
def minilm_demo():
    return build_adapter("visualbert-minilm")


def test_minilm_demo_reproduces_the_real_minilm_on_text(minilm_demo):
    """VisualBERT's text path is BERT's: word + position + type embeddings, same encoder."""
    words = ["the", "skateboarding", "girl", "was", "unbelievably", "fast"]
    (ex,) = minilm_demo.encode([ModelInput(words=words)])
    bert = AutoModel.from_pretrained(
        str(default_text_model_path()), attn_implementation="eager", local_files_only=True
    ).eval()
    enc = minilm_demo.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        ref = bert(**enc, output_hidden_states=True, output_attentions=True)
    assert minilm_demo.num_layers == 6 and minilm_demo.hidden_size == 384
    assert minilm_demo.num_heads == 12
    torch.testing.assert_close(ex.hidden[6], ref.hidden_states[6][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(ex.attentions[5], ref.attentions[5][0], atol=1e-4, rtol=0)


def test_minilm_demo_takes_regions_and_random_init_differs(minilm_demo):
    rng = np.random.default_rng(0)
    inp = ModelInput(
        words=["a", "dog"], region_features=rng.standard_normal((3, 2048)).astype(np.float32)
    )
    (ex,) = minilm_demo.encode([inp])
    assert ex.region_tokens == [[4], [5], [6]]
    assert minilm_demo.provenance()["adapter"] == "visualbert-minilm"
    assert minilm_demo.feature_dim == 2048

    random = build_adapter(
        "visualbert-minilm", random_init=True, config={"visual_embedding_dim": 8}
    )
    assert random.provenance()["revision"] == "random-init"
    assert random.feature_dim == 8
    emb, rand_emb = minilm_demo.model.embeddings, random.model.embeddings
    assert not torch.allclose(emb.word_embeddings.weight, rand_emb.word_embeddings.weight)
    with pytest.raises(KeyError):
        build_adapter("visualbert-minilm", config={"hidden_size": 8})
