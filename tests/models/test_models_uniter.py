"""UNITER: released checkpoint layout, BERT equivalence, an independent reference forward."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from vlprobe.models import uniter
from vlprobe.models.uniter import CheckpointError, UniterAdapter
from vlprobe.reporting.run_results import read_run_results
from vlprobe.testing.models import build_adapter, tiny_config

FEATURE_DIM = 16  # as tests/models/conftest.py

HEADS = {  # pre-training heads beside the encoder (shapes as in the release, scaled down)
    "cls.predictions.bias": (30522,),
    "cls.predictions.transform.dense.weight": (32, 32),
    "cls.predictions.transform.LayerNorm.gamma": (32,),
    "cls.predictions.decoder.weight": (30522, 32),
    "feat_regress.weight": (FEATURE_DIM, 32),
    "region_classifier.net.0.weight": (32, 32),
    "itm_output.weight": (2, 32),
    "itm_output.bias": (2,),
}


def released_layout(state: dict[str, torch.Tensor], prefix: bool = True) -> dict:
    """A state dict as the authors saved it: ``uniter.`` prefix, gamma/beta, heads, float16."""
    out = {}
    for key, value in state.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        )
        key = key.replace("layer_norm.weight", "layer_norm.gamma").replace(
            "layer_norm.bias", "layer_norm.beta"
        )
        out[("uniter." if prefix else "") + key] = value.half()
    for key, shape in HEADS.items():
        out[key] = torch.randn(shape).half()
    return out


@pytest.fixture(scope="module")
def tiny() -> UniterAdapter:
    adapter = build_adapter("uniter", config=tiny_config("uniter", feature_dim=FEATURE_DIM), seed=0)
    assert isinstance(adapter, UniterAdapter)
    return adapter


def write_checkpoint(adapter: UniterAdapter, folder: Path, prefix: bool = True) -> tuple:
    """The adapter's weights in the released layout, and its BERT-style JSON config."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, config = folder / "uniter.pt", folder / "uniter.json"
    torch.save(released_layout(adapter.model.state_dict(), prefix), ckpt)
    c = adapter.config
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
    keys += ("intermediate_size", "hidden_act", "hidden_dropout_prob", "type_vocab_size")
    keys += ("attention_probs_dropout_prob", "max_position_embeddings", "initializer_range")
    config.write_text(json.dumps({k: getattr(c, k) for k in keys}))
    return ckpt, config


@pytest.mark.parametrize("prefix", [True, False])
def test_released_layout_loads(tiny, tmp_path: Path, prefix: bool) -> None:
    ckpt, config = write_checkpoint(tiny, tmp_path, prefix)
    loaded = build_adapter("uniter", checkpoint=str(ckpt), config=str(config))
    expected = tiny.model.state_dict()
    got = loaded.model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key], value.half().float(), atol=0, rtol=0)
    assert loaded.provenance()["revision"] == "local"
    assert loaded.provenance()["architecture"] == f"config {config}"


def test_base_or_large_follows_from_shapes(tmp_path: Path, make_input, monkeypatch) -> None:
    # a stand-in for base (12 x 768) and large (24 x 1024): 2 layers of 128 known as a size
    monkeypatch.setattr(uniter, "SIZES", {(2, 128): "UNITER-test"})
    overrides = {"hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 96}
    small = build_adapter("uniter", config={**tiny_config("uniter", FEATURE_DIM), **overrides})
    ckpt, _ = write_checkpoint(small, tmp_path)
    loaded = build_adapter("uniter", checkpoint=str(ckpt))
    assert (loaded.num_layers, loaded.num_heads, loaded.hidden_size) == (2, 2, 128)
    assert loaded.config.intermediate_size == 96 and loaded.feature_dim == FEATURE_DIM
    assert loaded.provenance()["architecture"] == "inferred from shapes (UNITER-test)"
    a, b = small.encode([make_input()])[0], loaded.encode([make_input()])[0]
    torch.testing.assert_close(a.hidden, b.hidden, atol=5e-2, rtol=0)  # fp16 weights

    # the config-less path refuses a hidden size whose head count it cannot know
    ckpt32, _ = write_checkpoint(build_adapter("uniter", config=tiny_config("uniter")), tmp_path)
    with pytest.raises(CheckpointError, match="model.config=PATH.json"):
        build_adapter("uniter", checkpoint=str(ckpt32))


def _corrupt(tiny, tmp_path: Path, edit) -> tuple[Path, Path]:
    ckpt, config = write_checkpoint(tiny, tmp_path)
    state = torch.load(ckpt)
    edit(state)
    torch.save(state, ckpt)
    return ckpt, config


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.pop("uniter.encoder.layer.1.output.LayerNorm.gamma"),
            "missing key uniter.encoder.layer.1.output.LayerNorm.weight",
        ),
        (
            lambda s: s.update({"uniter.img_embeddings.box_linear.weight": torch.zeros(2)}),
            "unexpected key uniter.img_embeddings.box_linear.weight",
        ),
        (
            lambda s: s.update({"uniter.pooler.dense.bias": torch.zeros(7).half()}),
            r"uniter.pooler.dense.bias has shape \(7,\)",
        ),
    ],
)
def test_strict_encoder_keys_are_one_line_errors(tiny, tmp_path: Path, edit, message) -> None:
    ckpt, config = _corrupt(tiny, tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as err:
        build_adapter("uniter", checkpoint=str(ckpt), config=str(config))
    assert "\n" not in str(err.value)


def test_bad_paths_and_tokenizer(tiny, tmp_path: Path) -> None:
    ckpt, config = write_checkpoint(tiny, tmp_path)
    with pytest.raises(FileNotFoundError, match="model.checkpoint="):
        build_adapter("uniter", checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="model.tokenizer="):
        build_adapter(
            "uniter", checkpoint=str(ckpt), config=str(config), tokenizer=str(tmp_path / "nope")
        )
    config.write_text(json.dumps({**json.loads(config.read_text()), "hiden_size": 3}))
    with pytest.raises(CheckpointError, match="hiden_size"):
        build_adapter("uniter", checkpoint=str(ckpt), config=str(config))
    small = tmp_path / "small-vocab.json"
    small.write_text(json.dumps({**tiny_config("uniter"), "vocab_size": 100}))
    with pytest.raises(CheckpointError, match="30522 tokens"):
        build_adapter("uniter", config=str(small), random_init=True)
    with pytest.raises(ValueError, match="model.checkpoint=PATH.pt"):
        build_adapter("uniter")


def test_random_init_keeps_the_checkpoint_architecture(tiny, tmp_path: Path, make_input) -> None:
    ckpt, config = write_checkpoint(tiny, tmp_path)
    random = build_adapter(
        "uniter", checkpoint=str(ckpt), config=str(config), random_init=True, seed=1
    )
    assert random.provenance()["revision"] == "random-init"
    assert random.provenance()["config_sha256"] == tiny.provenance()["config_sha256"]
    a, b = tiny.encode([make_input()])[0], random.encode([make_input()])[0]
    assert (a.hidden[-1] - b.hidden[-1]).abs().max() > 1e-2
    # same seed as the tiny model's random draw: the same weights (no fp16 rounding)
    same = build_adapter("uniter", checkpoint=str(ckpt), config=str(config), random_init=True)
    assert torch.equal(same.encode([make_input()])[0].hidden, a.hidden)


def test_text_only_forward_equals_bert(tiny, make_input) -> None:
    c = tiny.config
    config = BertConfig(**{k: getattr(c, k) for k in tiny_config("uniter") if k != "img_dim"})
    bert = BertModel._from_config(config, attn_implementation="eager").eval()
    missing, unexpected = bert.load_state_dict(tiny.model.state_dict(), strict=False)
    assert missing == [] and all(k.startswith("img_embeddings.") for k in unexpected)
    batch = [make_input(n_regions=0), make_input("two dogs run", n_regions=0)]
    text = tiny._tokenize(batch)
    with torch.no_grad():
        out = bert(
            input_ids=text.input_ids,
            attention_mask=text.attention_mask,
            output_hidden_states=True,
            output_attentions=True,
        )
    for b, ex in enumerate(tiny.encode(batch)):
        n = ex.num_tokens
        hidden = torch.stack([h[b, :n] for h in out.hidden_states])
        attn = torch.stack([a[b, :, :n, :n] for a in out.attentions])
        torch.testing.assert_close(ex.hidden, hidden, atol=1e-5, rtol=0)
        torch.testing.assert_close(ex.attentions, attn, atol=1e-6, rtol=0)


def reference_forward(sd: dict, heads: int, ids: torch.Tensor, feats, boxes, size) -> tuple:
    """UNITER as the paper and the reference notes describe it, one example, no batching."""

    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-12)

    def lin(x, name):
        return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    e = "embeddings."
    text = sd[e + "word_embeddings.weight"][ids] + sd[e + "position_embeddings.weight"][: len(ids)]
    text = ln(text + sd[e + "token_type_embeddings.weight"][0], e + "LayerNorm")
    w, h = size
    x1, y1, x2, y2 = (torch.as_tensor(boxes[:, i]) for i in range(4))
    pos = torch.stack([x1 / w, y1 / h, x2 / w, y2 / h, (x2 - x1) / w, (y2 - y1) / h], 1)
    pos = torch.cat([pos, (pos[:, 4] * pos[:, 5])[:, None]], 1)
    i = "img_embeddings."
    image = ln(lin(torch.as_tensor(feats), i + "img_linear"), i + "img_layer_norm")
    image = image + ln(lin(pos, i + "pos_linear"), i + "pos_layer_norm")
    image = ln(image + sd[e + "token_type_embeddings.weight"][1], i + "LayerNorm")
    x = torch.cat([text, image])
    hidden, attentions = [x], []
    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
    for layer in range(n_layers):
        p = f"encoder.layer.{layer}."
        q, k, v = (lin(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
        d = q.shape[-1] // heads
        probs, context = [], []
        for head in range(heads):
            s = slice(head * d, (head + 1) * d)
            a = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), -1)
            probs.append(a)
            context.append(a @ v[:, s])
        x = ln(lin(torch.cat(context, 1), p + "attention.output.dense") + x,
               p + "attention.output.LayerNorm")  # fmt: skip
        inner = F.gelu(lin(x, p + "intermediate.dense"))  # erf GELU, as BERT's "gelu"
        x = ln(lin(inner, p + "output.dense") + x, p + "output.LayerNorm")
        hidden.append(x)
        attentions.append(torch.stack(probs))
    return torch.stack(hidden), torch.stack(attentions)


def test_full_forward_equals_the_published_description(tiny, make_input) -> None:
    long = make_input("a young man skateboarding down the street", n_regions=4, seed=2)
    short = make_input("two dogs", n_regions=2, seed=3)  # padding on both text and regions
    sd = tiny.model.state_dict()
    for inp, ex in zip([long, short], tiny.encode([long, short]), strict=True):
        ids = tiny._tokenize([inp]).input_ids[0]
        hidden, attn = reference_forward(
            sd, tiny.num_heads, ids, inp.region_features, inp.region_boxes, inp.image_size
        )
        torch.testing.assert_close(ex.hidden, hidden, atol=1e-4, rtol=0)
        torch.testing.assert_close(ex.attentions, attn, atol=1e-5, rtol=0)
        n_text = len(ids)
        assert ex.region_tokens == [[n_text + r] for r in range(len(inp.region_features))]
        assert ex.modality.tolist() == [0] * n_text + [1] * len(inp.region_features)


def test_contract_shapes_and_batch_invariance(tiny, make_input) -> None:
    alone = tiny.encode([make_input("two dogs", n_regions=2, seed=1)])[0]
    batch = tiny.encode(
        [
            make_input("a much longer caption about a dog and a frisbee", n_regions=5, seed=4),
            make_input("two dogs", n_regions=2, seed=1),
            make_input("text only", n_regions=0),
        ]
    )
    torch.testing.assert_close(alone.hidden, batch[1].hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone.attentions, batch[1].attentions, atol=1e-6, rtol=0)
    assert (batch[2].modality == 0).all()
    for ex in batch:
        rows = ex.attentions.sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)
        assert ex.hidden.shape[0] == tiny.num_layers + 1 == len(tiny.layer_names)
        assert ex.attentions.shape[:2] == (tiny.num_layers, tiny.num_heads)
    assert np.isclose(alone.hidden.norm().item(), batch[1].hidden.norm().item())


# ---------------------------------------------------------------- extraction and every task
DEMO_DIM = 64


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A 16-scene demo set and a tiny UNITER over its 64-d features, in the released layout."""
    from vlprobe.synthetic import make_demo_data

    root = tmp_path_factory.mktemp("uniter-demo")
    make_demo_data(root / "data", scenes=16, seed=1, feature_dim=DEMO_DIM, senteval_per_task=60)
    adapter = build_adapter("uniter", config=tiny_config("uniter", feature_dim=DEMO_DIM))
    ckpt, config = write_checkpoint(adapter, root / "ckpt")
    return root / "data", ckpt, config


def _overrides(demo_checkpoint) -> list[str]:
    root, ckpt, config = demo_checkpoint
    return [
        "model=uniter",
        f"model.checkpoint={ckpt}",
        f"model.config={config}",
        f"data.root={root}",
        "data.make_demo=false",
        f"data.feature_dim={DEMO_DIM}",
        "data.vg_split=[0.5,0.25,0.25]",  # 16 scenes: every split gets images
        "extraction.progress=false",
        "extraction.batch_size=8",
    ]


def test_every_layer_and_head_reach_the_cache(compose_cfg, demo_checkpoint) -> None:
    from vlprobe.cache.reader import CacheReader
    from vlprobe.data.builders import build_flickr_examples
    from vlprobe.data.region_features import load_region_features
    from vlprobe.extraction.pipeline import build_model, run_extraction

    root, _, _ = demo_checkpoint
    cfg = compose_cfg([*_overrides(demo_checkpoint), "dataset=flickr30k"], config_name="extract")
    reader = CacheReader(run_extraction(cfg, "flickr30k"))
    f = reader.file
    assert reader.attr("model_name") == "uniter" and reader.attr("model_revision") == "local"
    assert reader.layer_names == ["emb", "L01", "L02"]
    assert (reader.num_layers, reader.num_heads) == (2, 4)
    assert f["pairs/coref/attention"].shape[1:] == (2, 4, 2)

    adapter = build_model(cfg)
    examples = {
        ex.example_id: ex
        for ex in build_flickr_examples(
            root / "flickr30k", load_region_features(root / "features" / "butd.tsv")
        )
    }
    ids = [i.decode() for i in f["examples/id"][()]]
    offsets = reader.array("examples/token_offset")
    stored = sorted(f["attention/maps"], key=int)
    assert stored
    for key in stored[:2]:
        e = int(key)
        (encoded,) = adapter.encode([examples[ids[e]].inputs])
        hidden = f["tokens/hidden"][:, offsets[e] : offsets[e + 1]].astype(np.float32)
        assert hidden.shape == tuple(encoded.hidden.shape)  # every layer, every token
        np.testing.assert_allclose(hidden, encoded.hidden.numpy(), atol=2e-2)
        maps = f["attention/maps"][key][()].astype(np.float32)
        assert maps.shape == tuple(encoded.attentions.shape)  # every layer, every head
        np.testing.assert_allclose(maps, encoded.attentions.numpy(), atol=2e-3)


@pytest.mark.parametrize(
    "task",
    [
        "visual_relation",
        "visual_coreference",
        "cross_modal_alignment",
        "modality_importance",
        "fusion_degree",
        "linguistic/past_present",
    ],
)
def test_every_value_task_runs_from_a_uniter_checkpoint(compose_cfg, demo_checkpoint, task) -> None:
    from probes.run import run

    extra = ["task.baseline_model=null"] if task.startswith("linguistic") else []
    cfg = compose_cfg([*_overrides(demo_checkpoint), f"task={task}", "debug=fast", *extra])
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    assert rows and "L02" in json.dumps(rows)  # the UNITER's last layer was probed


def test_bad_checkpoint_writes_nothing(compose_cfg, demo_checkpoint, tmp_path: Path) -> None:
    from vlprobe.extraction.pipeline import cache_path, run_extraction

    _, ckpt, config = demo_checkpoint
    state = torch.load(ckpt)
    state.pop("uniter.img_embeddings.pos_linear.weight")
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    cfg = compose_cfg(
        [*_overrides(demo_checkpoint), f"model.checkpoint={bad}", "dataset=visual_genome"],
        config_name="extract",
    )
    with pytest.raises(
        CheckpointError, match="missing key uniter.img_embeddings.pos_linear.weight"
    ):
        run_extraction(cfg, "visual_genome")
    out = cache_path(cfg, "visual_genome")
    assert not out.exists() and not list(out.parent.glob("*.partial"))
