"""CLIP preprocessing and embeddings, the LAION predictor's loader and the aesthetic oracle.

All models are tiny and built in code or saved to tmp_path: nothing downloads."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from seiko.config import ConfigError
from seiko.image import records
from seiko.image.aesthetic import (AestheticMLP, AestheticOracle, AestheticScorer, PREDICTOR_KEYS,
                                   build_embedder, load_aesthetic_mlp)
from seiko.image.clip import CLIP_MEAN, CLIP_STD, ClipImageEmbedder, preprocess


@pytest.fixture(scope="module")
def embedder():
    return ClipImageEmbedder.tiny(seed=0, image_size=32, embed_dim=32)


@pytest.fixture(scope="module")
def mlp():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return AestheticMLP(input_dim=32).eval()


class FakeDomain:
    """What an image oracle binds to: ``load_pixels(designs) -> (pixels, ok)`` over a run folder."""

    def __init__(self, root, channels=3):
        self.root, self.channels = root, channels

    def load_pixels(self, designs):
        return records.load_pixels(designs, self.root, self.channels)


# ---------------------------------------------------------------- preprocessing

def test_preprocess_shape_and_normalisation():
    gray = torch.full((2, 3, 64, 48), 0.5)
    out = preprocess(gray)
    assert out.shape == (2, 3, 224, 224)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out, expected.view(1, 3, 1, 1).expand_as(out), atol=1e-5, rtol=0)
    assert preprocess(torch.rand(1, 3, 40, 40), size=32).shape == (1, 3, 32, 32)


def test_preprocess_repeats_one_channel_and_keeps_gradients():
    pixels = torch.rand(2, 1, 50, 50, requires_grad=True)
    out = preprocess(pixels, size=32)
    assert out.shape == (2, 3, 32, 32)
    torch.testing.assert_close(out[:, 0] * CLIP_STD[0] + CLIP_MEAN[0], out[:, 2] * CLIP_STD[2] + CLIP_MEAN[2])
    out.square().sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pixels must be"):
        preprocess(torch.rand(1, 2, 8, 8))


# ---------------------------------------------------------------- embedder

def test_tiny_embedder_unit_norm_frozen_and_differentiable(embedder):
    pixels = torch.rand(3, 3, 40, 40, requires_grad=True)
    embeds = embedder(pixels)
    assert embeds.shape == (3, 32) and embeds.dtype == torch.float32
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in embedder.parameters())
    embeds[:, 0].sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    embedder.train()
    assert not embedder.training and not embedder.model.training
    # seeded: the same seed builds the same tower, another seed another
    again = ClipImageEmbedder.tiny(seed=0)(pixels.detach())
    torch.testing.assert_close(again, embeds.detach())
    assert not torch.allclose(ClipImageEmbedder.tiny(seed=1)(pixels.detach()), embeds.detach())


def test_from_transformers_round_trip(embedder, tmp_path):
    embedder.model.save_pretrained(tmp_path / "clip")
    loaded = ClipImageEmbedder.from_transformers(str(tmp_path / "clip"), local_files_only=True)
    assert loaded.image_size == 32 and loaded.embed_dim == 32
    pixels = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(pixels), embedder(pixels), atol=1e-6, rtol=0)


def test_from_transformers_on_a_whole_clip_matches_its_image_features(tmp_path):
    """A CLIPModel checkpoint (text + vision, as openai/clip-vit-large-patch14): the vision tower and
    its projection, the same embeddings as CLIPModel.get_image_features (the reference code's path)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=100, max_position_embeddings=16,
                                         eos_token_id=2, bos_token_id=1, pad_token_id=0),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8),
                        projection_dim=24)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        full = CLIPModel(config).eval()
    full.save_pretrained(tmp_path / "full")
    loaded = ClipImageEmbedder.from_transformers(str(tmp_path / "full"), local_files_only=True)
    assert loaded.image_size == 32 and loaded.embed_dim == 24
    pixels = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        features = full.get_image_features(pixel_values=preprocess(pixels, 32))
        features = features if torch.is_tensor(features) else features.pooler_output
        expected = features / features.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(loaded(pixels), expected, atol=1e-5, rtol=0)


def test_unloadable_clip_is_one_line_naming_oracle_clip(tmp_path):
    with pytest.raises(ConfigError) as info:
        ClipImageEmbedder.from_transformers(str(tmp_path / "no-such-folder"), local_files_only=True)
    message = str(info.value)
    assert message.startswith("oracle.clip") and "\n" not in message


def test_open_clip_missing_is_one_line_pointing_to_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    with pytest.raises(ConfigError) as info:
        ClipImageEmbedder.from_open_clip("ViT-L-14", "openai")
    message = str(info.value)
    assert "open_clip" in message and "torchvision" in message and "transformers" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="oracle.backend"):
        build_embedder("x", backend="jax")


# ---------------------------------------------------------------- predictor

def test_mlp_has_the_laion_layout_and_is_linear():
    model = AestheticMLP(input_dim=768)
    assert tuple(model.state_dict()) == PREDICTOR_KEYS
    assert [tuple(model.state_dict()[f"layers.{i}.weight"].shape) for i in (0, 2, 4, 6, 7)] == [
        (1024, 768), (128, 1024), (64, 128), (16, 64), (1, 16)]
    model.eval()
    a, b = torch.randn(1, 768), torch.randn(1, 768)
    with torch.no_grad():  # affine: f(a + b) = f(a) + f(b) - f(0)
        torch.testing.assert_close(model(a + b), model(a) + model(b) - model(torch.zeros(1, 768)),
                                   atol=1e-4, rtol=0)


def test_predictor_round_trip(mlp, tmp_path):
    path = tmp_path / "predictor.pth"
    torch.save(mlp.state_dict(), path)
    loaded = load_aesthetic_mlp(str(path))
    assert loaded.input_dim == 32 and not loaded.training
    x = torch.nn.functional.normalize(torch.randn(5, 32), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), mlp(x), atol=0, rtol=0)


def test_predictor_with_wrong_keys_names_the_file_and_the_keys(mlp, tmp_path):
    path = tmp_path / "other.pth"
    state = {k.replace("layers.", "net."): v for k, v in mlp.state_dict().items()}
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_aesthetic_mlp(str(path))
    message = str(info.value)
    assert str(path) in message and "layers.0.weight" in message and "layers.7.bias" in message
    assert "\n" not in message


def test_missing_predictor_is_one_line_naming_oracle_predictor(tmp_path):
    for ref in (str(tmp_path / "missing.pth"), "owner/repo/file.pth"):
        with pytest.raises(ConfigError) as info:  # a hub reference, with the hub out of reach
            load_aesthetic_mlp(ref, local_files_only=True, cache_dir=str(tmp_path / "hub"))
        message = str(info.value)
        assert message.startswith("oracle.predictor") and "\n" not in message


def test_scorer_is_differentiable_and_checks_widths(embedder, mlp):
    scorer = AestheticScorer(embedder, mlp)
    pixels = torch.rand(4, 3, 32, 32, requires_grad=True)
    scores = scorer(pixels)
    assert scores.shape == (4,)
    scores.sum().backward()
    assert pixels.grad.abs().sum() > 0
    scorer.train()
    assert not scorer.mlp.training  # dropout stays off
    with pytest.raises(ConfigError, match="oracle.predictor"):
        AestheticScorer(embedder, AestheticMLP(input_dim=768))


# ---------------------------------------------------------------- oracle

def _images(n, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def test_oracle_scores_the_saved_pngs(embedder, mlp, tmp_path):
    pixels = _images(5)
    designs = records.save_images(pixels, [f"p{i}" for i in range(5)], list(range(5)), tmp_path)
    record = records.ImageRecord.from_text(designs[3])
    (tmp_path / record.image).unlink()  # a missing file: infeasible
    designs = designs + ["not a record"]
    oracle = AestheticOracle.from_parts(embedder, mlp, noise_std=0.0, batch_size=2, device="cpu").bind(
        FakeDomain(tmp_path))
    assert isinstance(oracle, AestheticOracle)
    values = np.asarray(oracle(designs))
    assert values.shape == (6,) and np.isnan(values[[3, 5]]).all() and np.isfinite(values[[0, 1, 2, 4]]).all()
    stored = torch.from_numpy(records.to_uint8(pixels)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        direct = AestheticScorer(embedder, mlp)(stored).double().numpy()
    np.testing.assert_allclose(values[[0, 1, 2, 4]], direct[[0, 1, 2, 4]], atol=1e-5, rtol=0)


def test_oracle_noise_has_the_asked_std_and_follows_the_seed_and_the_design(embedder, mlp, tmp_path):
    design = records.save_images(_images(1, seed=3), ["a cat"], [0], tmp_path)[0]
    record = records.ImageRecord.from_text(design)
    # 1500 designs of the same picture (records differing in their noise seed): one clean score
    designs = [records.ImageRecord(record.image, record.sha256, record.prompt, i).to_text() for i in range(1500)]
    domain = FakeDomain(tmp_path)

    def oracle(std, seed, **kw):
        return AestheticOracle.from_parts(embedder, mlp, noise_std=std, seed=seed, device="cpu", **kw).bind(domain)

    clean = oracle(0.0, 0)([design])[0]
    labels = np.asarray(oracle(0.1, 7, batch_size=500)(designs))
    assert labels.std() == pytest.approx(0.1, abs=0.008)  # std error ~0.002
    assert labels.mean() == pytest.approx(clean, abs=0.01)
    # a design's noise depends on (seed, design) only: another instance (a resumed run), another
    # batch size, another order or a subset give each design the same label
    again = oracle(0.1, 7, batch_size=64)(designs[::-1][:300])
    np.testing.assert_array_equal(labels[::-1][:300], again)
    other = oracle(0.1, 8, batch_size=500)(designs[:10])
    assert not np.allclose(labels[:10], other)


def test_oracle_init_builds_from_local_files(embedder, mlp, tmp_path):
    """The configured path (what Hydra instantiates), on local files only."""
    embedder.model.save_pretrained(tmp_path / "clip")
    torch.save(mlp.state_dict(), tmp_path / "predictor.pth")
    oracle = AestheticOracle(clip=str(tmp_path / "clip"), predictor=str(tmp_path / "predictor.pth"),
                             noise_std=0.0, local_files_only=True, device="cpu")
    design = records.save_images(_images(1), ["a dog"], [0], tmp_path)
    value = oracle.bind(FakeDomain(tmp_path))(design)[0]
    direct = AestheticOracle.from_parts(embedder, mlp, device="cpu").bind(FakeDomain(tmp_path))(design)[0]
    assert value == pytest.approx(direct, abs=1e-5)


def test_config_file_instantiates_on_local_files(embedder, mlp, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from seiko.cli_support import CONFIG_DIR

    cfg = OmegaConf.load(CONFIG_DIR / "oracle" / "aesthetic.yaml")
    assert cfg._target_ == "seiko.image.aesthetic.AestheticOracle" and cfg.noise_std == 0.1
    assert cfg.clip == "openai/clip-vit-large-patch14" and cfg.backend == "transformers"
    embedder.model.save_pretrained(tmp_path / "clip")
    torch.save(mlp.state_dict(), tmp_path / "predictor.pth")
    cfg.clip, cfg.predictor, cfg.local_files_only = str(tmp_path / "clip"), str(tmp_path / "predictor.pth"), True
    oracle = instantiate(cfg)
    assert isinstance(oracle, AestheticOracle) and oracle.noise_std == 0.1
