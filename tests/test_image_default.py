"""The CPU image default: shipped digits, the committed diffusion checkpoint, the frozen scorer, the oracle."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seiko.image import records
from seiko.image.components import load_parts
from seiko.image.digits import DIGIT_PROMPTS, digits_split, label_of, load_digits_images, prompt_of, split_indices
from seiko.image.scorer import ASSET_DIR, DigitsOracle, load_scorer

# the committed checkpoint's samples: mean quality 0.9996, agreement 1.0 (256, DDIM 50, guidance 5;
# pretrain.json); these 32 at 20 steps measured 0.9999 and 1.0. The floors leave a margin and are far
# above noise (0.0) or a model trained 20 steps (0.34 quality, 0.16 agreement)
SAMPLE_QUALITY_FLOOR = 0.9
SAMPLE_AGREEMENT_FLOOR = 0.9


@pytest.fixture(scope="module")
def scorer():
    return load_scorer()


@pytest.fixture(scope="module")
def parts():
    return load_parts(str(ASSET_DIR))


def test_digits_shapes_range_labels_and_split():
    pixels, labels = load_digits_images()
    assert pixels.shape == (1797, 1, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= 0 and pixels.max() <= 1 and pixels.max() > 0.9
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    train, held = split_indices()
    assert len(train) == 1500 and len(held) == 297
    assert not set(train) & set(held) and len(set(train) | set(held)) == 1797
    again = split_indices()
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    x, y = digits_split("held_out")
    assert x.shape == (297, 1, 16, 16) and torch.equal(y, labels[torch.from_numpy(held)])
    assert len(DIGIT_PROMPTS) == 10 and DIGIT_PROMPTS[3] == "a handwritten digit three"
    assert [label_of(p) for p in prompt_of(range(10))] == list(range(10)) and label_of("a cat") is None
    with pytest.raises(ValueError):
        digits_split("test")


def test_committed_checkpoint_loads_and_samples(parts):
    from seiko.image.pretrain import encode_prompts, sample_images

    assert parts.vae is None and parts.vae_scale == 1.0
    assert parts.unet.config.in_channels == 1 and parts.unet.config.sample_size == 16
    text = encode_prompts(parts, ["a handwritten digit seven", ""])
    assert text.shape == (2, parts.tokenizer.model_max_length, parts.unet.config.cross_attention_dim)
    with torch.no_grad():
        eps = parts.unet(torch.randn(2, 1, 16, 16), torch.tensor([10, 900]), text).sample
    assert eps.shape == (2, 1, 16, 16) and torch.isfinite(eps).all()
    pixels = sample_images(parts, DIGIT_PROMPTS[:2], steps=3, seed=0)
    assert pixels.shape == (2, 1, 16, 16) and pixels.min() >= 0 and pixels.max() <= 1
    assert torch.equal(pixels, sample_images(parts, DIGIT_PROMPTS[:2], steps=3, seed=0))
    summary = json.loads((ASSET_DIR / "pretrain.json").read_text())
    assert summary["command"].startswith("python -m seiko.image.pretrain")


def test_scorer_on_real_digits_and_noise(scorer):
    x, y = digits_split("held_out")
    noise = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert scorer.quality(x).mean() >= 0.8
        assert scorer.quality(noise).mean() <= 0.1
        assert (scorer.quality.predict(x) == y).float().mean() >= 0.9
        e = scorer.embedder(x[:16])
        assert e.shape[0] == 16 and 32 <= e.shape[1] <= 128
        assert torch.allclose(e.norm(dim=-1), torch.ones(16), atol=1e-5)
        r = scorer.reward(x)
        assert r.shape == (297,) and torch.allclose(r, x.mean(dim=(1, 2, 3)))
        # three channels, other sizes: the same scores as the gray 16x16
        assert torch.allclose(scorer.quality(x[:8].expand(-1, 3, -1, -1)), scorer.quality(x[:8]), atol=1e-5)
        assert scorer.quality(torch.nn.functional.interpolate(x[:8], size=32)).shape == (8,)
        # the trade-off: a gray wash raises the reward and destroys the digits
        washed = (x + 0.4).clamp(0, 1)
        assert scorer.reward(washed).mean() > scorer.reward(x).mean() + 0.2
        assert scorer.quality(washed).mean() < 0.2
    for module in scorer:
        assert not any(p.requires_grad for p in module.parameters()) and not module.training
        pixels = x[:4].clone().requires_grad_(True)
        module(pixels).sum().backward()
        assert pixels.grad is not None and pixels.grad.abs().sum() > 0


class FakeDomain:
    def __init__(self, root):
        self.root = root

    def load_pixels(self, designs):
        return records.load_pixels(designs, self.root, channels=1)


def test_digits_oracle_reads_images(tmp_path):
    x, _ = digits_split("held_out")
    x = x[:6]
    designs = records.save_images(x, prompt_of(range(6)), list(range(6)), tmp_path)
    expected = records.load_pixels(designs, tmp_path, channels=1)[0].mean(dim=(1, 2, 3)).numpy()
    oracle = DigitsOracle().bind(FakeDomain(tmp_path))
    values = np.array(oracle(designs))
    assert np.allclose(values, expected, atol=1e-6) and np.allclose(values, x.mean(dim=(1, 2, 3)).numpy(), atol=3e-3)
    broken = designs[:2] + ["not a record", designs[3].replace(designs[3][10:14], "zzzz")]
    values = np.array(oracle(broken))
    assert np.allclose(values[:2], expected[:2]) and np.isnan(values[2:]).all()
    noisy = DigitsOracle(noise_std=0.05, seed=1).bind(FakeDomain(tmp_path))
    draws = np.array([noisy(designs) for _ in range(3)]) - expected
    assert (draws == draws[0]).all() and np.abs(draws).max() < 0.25  # one draw a design, whoever asks
    shifted = [d.replace('"seed": ', '"seed": 9') for d in designs]  # same pictures, other designs
    assert not np.allclose(np.array(DigitsOracle(noise_std=0.05, seed=1).bind(FakeDomain(tmp_path))(shifted)),
                           draws[0] + expected)
    with pytest.raises(RuntimeError):
        DigitsOracle()(designs)


def test_pretrained_samples_are_digits(parts, scorer):
    from seiko.image.pretrain import sample_images

    labels = torch.arange(32) % 10
    pixels = sample_images(parts, prompt_of(labels), steps=20, guidance=5.0, seed=1)
    with torch.no_grad():
        quality = scorer.quality(pixels)
        agreement = (scorer.quality.predict(pixels) == labels).float().mean().item()
    assert quality.mean().item() >= SAMPLE_QUALITY_FLOOR, quality
    assert agreement >= SAMPLE_AGREEMENT_FLOOR
    assert scorer.reward(pixels).std() > 0.01  # the reward spreads over the samples


def test_pretrain_is_deterministic(tmp_path):
    from seiko.image.pretrain import main, train_diffusion, train_scorer

    a, b = train_scorer(3, 4, batch_size=16), train_scorer(3, 4, batch_size=16)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    a, b = (train_diffusion(3, 2, batch_size=4, lr=1e-3, drop=0.5, ema_decay=0.9) for _ in range(2))
    for first, second in ((a.unet, b.unet), (a.text_encoder, b.text_encoder)):
        assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    main(["--out", str(tmp_path), "--steps", "1", "--batch-size", "4", "--scorer-steps", "1",
          "--eval-samples", "2", "--eval-steps", "2"])
    summary = json.loads((tmp_path / "pretrain.json").read_text())
    assert summary["samples"]["n"] == 2 and not math.isnan(summary["held_out"]["quality_mean"])
    assert not (tmp_path / "vae").exists()
    parts, scorer = load_parts(str(tmp_path)), load_scorer(tmp_path)
    assert parts.vae is None and scorer.embedder(torch.rand(1, 1, 16, 16)).shape == (1, 64)
