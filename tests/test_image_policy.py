"""The image path on a tiny Stable Diffusion built in code: DDIM steps, LoRA references that
switch adapters, gradient checkpointing, adapter checkpoints in diffusers' format, records."""
from __future__ import annotations

import json

import pytest
import torch

from seiko.diffusion.ddim import Conditioning, DDIMDiffusion, ImageBatch
from seiko.diffusion.sampler import relaxed_rollout, sample
from seiko.finetune.base import frozen
from seiko.image.components import build_tokenizer, save_parts, tiny_parts
from seiko.image.policy import PromptedUNet
from seiko.image.records import ImageRecord, load_pixels, save_images
from seiko.methods import kl_reference

WORDS = ["a photo of a cat", "a photo of a dog", "zebra"]


class Prompts:
    def draw(self, num, generator, purpose):
        return [WORDS[i % len(WORDS)] for i in range(num)]


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_sd")
    save_parts(tiny_parts(words=WORDS, sample_size=8), path)
    return path


def perturb(policy: PromptedUNet, scale: float = 0.05, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.lora_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_tokenizer_built_in_code_makes_prompt_words_single_tokens():
    tok = build_tokenizer(["a photo of a zebra"])
    ids = tok(["a photo of a zebra"]).input_ids[0]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert len(ids) == 2 + 5  # one token a word
    assert tok.decode(ids[1:-1]).strip() == "a photo of a zebra"
    assert len(tok(["quokka"]).input_ids[0]) > 3  # an unknown word falls back to byte pieces


def test_ddim_step_matches_diffusers_scheduler():
    from diffusers import DDIMScheduler

    from seiko.image.components import SD_SCHEDULER

    family = DDIMDiffusion((4, 8, 8), num_steps=10, eta=1.0)
    scheduler = DDIMScheduler(**SD_SCHEDULER)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    for step in (0, 4, 9):
        eps, z = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
        t = int(family.timesteps[step])
        assert t == int(scheduler.timesteps[step])
        expected = scheduler.step(eps, t, x, eta=1.0, variance_noise=z).prev_sample
        dist = family.transition(eps, x, step, None)
        assert float(dist.std) > 0  # SD keeps the last alpha below one: every KL is finite
        torch.testing.assert_close(dist.mean + dist.std * z, expected, atol=1e-5, rtol=1e-5)


def test_step_kl_is_the_papers_mean_difference_term():
    family = DDIMDiffusion((4, 8, 8), num_steps=10)
    g = torch.Generator().manual_seed(1)
    x, e1, e2 = (torch.randn(3, 4, 8, 8, generator=g) for _ in range(3))
    a, b = family.transition(e1, x, 3, None), family.transition(e2, x, 3, None)
    expected = ((a.mean - b.mean) ** 2).flatten(1).sum(-1) / (2 * a.std ** 2)
    torch.testing.assert_close(a.kl(b), expected, rtol=1e-4, atol=1e-6)


def test_start_draws_seeded_noise_and_fixed_evaluation_seeds():
    family = DDIMDiffusion((4, 8, 8), prompts=Prompts(), num_steps=4, eval_seed=7)
    x, ctx = family.start(3, torch.Generator().manual_seed(0))
    again = torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(ctx.seeds[1]))
    assert torch.equal(x[1], again)  # a record's seed alone rebuilds its starting noise
    _, e1 = family.start(3, torch.Generator().manual_seed(1), purpose="evaluate")
    _, e2 = family.start(3, torch.Generator().manual_seed(2), purpose="evaluate")
    assert e1.seeds == e2.seeds == [7, 8, 9]


def test_pretrained_reference_is_the_base_unet_exactly_and_previous_is_a_snapshot(sd_dir):
    policy, base = PromptedUNet(str(sd_dir), guidance_scale=3.0), PromptedUNet(str(sd_dir), guidance_scale=3.0)
    pretrained = kl_reference(policy, "pretrained")
    perturb(policy, seed=0)
    previous = kl_reference(policy, "previous")
    snapshot = [p.detach().clone() for p in policy.lora_parameters()]
    perturb(policy, seed=1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([900, 20])
    ctx = Conditioning(["a photo of a cat", "zebra"], [0, 1])
    with torch.no_grad():
        base.unet.disable_adapters()
        expected = base(x, t, ctx)
        assert torch.equal(pretrained(x, t, ctx), expected)  # adapters off = the pretrained UNet, bit for bit
        assert not torch.allclose(policy(x, t, ctx), expected)
        for p, s in zip(base.lora_parameters(), snapshot):
            p.copy_(s)
        base.unet.enable_adapters()
        torch.testing.assert_close(previous(x, t, ctx), base(x, t, ctx))  # the round-0 adapter, not the live one
    # the views added no parameters and no copies; the policy trains only its own adapter
    assert frozen(pretrained) is pretrained and frozen(previous) is previous
    assert list(pretrained.parameters()) == []
    trainable = {id(p) for p in policy.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in policy.lora_parameters()}


def test_gradient_checkpointing_recomputes_with_the_policys_adapter(sd_dir):
    """A reference runs between the policy's forward and its recomputation in backward: the
    gradients must equal those of the same rollout without checkpointing."""
    family = DDIMDiffusion((4, 8, 8), prompts=Prompts(), num_steps=4)
    grads = []
    for use_checkpoint in (False, True):
        policy = PromptedUNet(str(sd_dir), guidance_scale=2.0)
        perturb(policy, seed=3)
        refs = {"pretrained": kl_reference(policy, "pretrained"), "previous": kl_reference(policy, "previous")}
        perturb(policy, seed=4)
        out = relaxed_rollout(policy, family, 2, refs, torch.Generator().manual_seed(5), grad_steps=3,
                              use_checkpoint=use_checkpoint)
        assert all(float(v.min()) > 0 for v in out.kl.values())
        loss = out.final.square().mean() + sum(v.mean() for v in out.kl.values())
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.lora_parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def test_adapter_checkpoint_round_trip_and_diffusers_loads_the_export(sd_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    from seiko.checkpoint import load_policy, save_policy
    from seiko.image.components import load_parts

    policy = PromptedUNet(str(sd_dir), lora_rank=2, guidance_scale=1.0)
    perturb(policy, seed=6)
    spec = {"denoiser": {"_target_": "seiko.image.policy.PromptedUNet", "model": str(sd_dir), "lora_rank": 2,
                         "guidance_scale": 1.0},
            "family": {"_target_": "seiko.diffusion.ddim.DDIMDiffusion", "shape": [4, 8, 8], "num_steps": 4}}
    path = save_policy(tmp_path / "round_0.safetensors", policy, spec)
    assert path.stat().st_size < 200_000  # the adapter only, not the UNet
    restored, family, _ = load_policy(path)
    x, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([500]), Conditioning(["zebra"], [0])
    with torch.no_grad():
        torch.testing.assert_close(restored(x, t, ctx), policy(x, t, ctx))
    export = policy.export_adapter(tmp_path / "lora")
    parts = load_parts(str(sd_dir))
    pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                   unet=parts.unet, scheduler=parts.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(export))
    with torch.no_grad():
        cond = policy.embed(["zebra"])
        theirs = pipe.unet(x, t, encoder_hidden_states=cond).sample
        torch.testing.assert_close(theirs, policy(x, t, ctx), rtol=1e-4, atol=1e-5)


def test_sample_hands_the_domain_prompts_and_seeds(sd_dir):
    policy = PromptedUNet(str(sd_dir), guidance_scale=3.0)
    family = DDIMDiffusion((4, 8, 8), prompts=Prompts(), num_steps=3)
    a = sample(policy, family, 3, torch.Generator().manual_seed(0))
    b = sample(policy, family, 3, torch.Generator().manual_seed(0))
    assert isinstance(a, ImageBatch) and a.latents.shape == (3, 4, 8, 8)
    assert a.prompts == WORDS and a.seeds == b.seeds and torch.equal(a.latents, b.latents)


def test_records_name_files_by_hash_and_catch_changed_files(tmp_path):
    pixels = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    texts = save_images(pixels, ["cat", "dog", "cat"], [1, 2, 3], tmp_path)
    records = [ImageRecord.from_text(t) for t in texts]
    assert records[1].prompt == "dog" and records[2].seed == 3
    assert all((tmp_path / r.image).is_file() and r.image.endswith(r.sha256[:16] + ".png") for r in records)
    assert "pixels" not in json.loads(texts[0]) and len(texts[0]) < 200
    loaded, ok = load_pixels(texts, tmp_path, 3)
    assert ok.all() and torch.allclose(loaded, (pixels * 255).round() / 255, atol=1e-6)
    (tmp_path / records[0].image).write_bytes(b"not a png")
    (tmp_path / records[1].image).unlink()
    _, ok = load_pixels(texts + ["not a record"], tmp_path, 3)
    assert ok.tolist() == [False, False, True, False]
