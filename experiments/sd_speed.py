"""Stable Diffusion v1.5 at 512 px: what one SEIKO fine-tuning step and one sampled batch cost,
through seiko and through the same step written as a plain diffusers + peft loop.

The weights are RANDOM (no model hub here); speed and memory depend on the architecture and the
settings, not on the weights. The parts are built in code at SD v1.5's real sizes (UNet
2D-conditional 320/640/1280/1280, 8 heads, cross-attention 768; the KL-f8 VAE 128/256/512/512,
latent 4, scaling 0.18215; CLIP ViT-L/14's text tower, 12 x 768; CLIP ViT-L/14's vision tower,
24 x 1024, projection 768, for the reward's features), saved as a diffusers folder in a temporary
directory, and both paths load them from there.

(a) seiko: ``PromptedUNet`` (LoRA rank 4 on to_q/to_k/to_v/to_out.0, CFG 7.5) + ``DDIMDiffusion``
    (eta 1.0) + ``relaxed_rollout`` with both KL references (adapters off; a snapshot adapter)
    + ``ImageDomain.features`` (VAE decode, CLIP image embedding) + a linear reward on the
    embedding, -reward + 1e-4 KL_pre + 1e-4 KL_prev, backward, clipping at 5, AdamW
    (lr 1e-3, weight decay 0.1) on the LoRA weights: ``BackpropFinetuner.training_step`` and
    its optimiser step.
(b) plain: the same step written with diffusers + peft only, as the public SEIKO / AlignProp
    code does: ``unet.add_adapter`` for the policy, the KL references as full frozen UNet copies
    (the pretrained UNet loaded again; a deep copy of the policy UNet for the previous round),
    a DDIM loop by hand, VAE decode, CLIP, reward, backward, clipping, AdamW.

Both run every step's policy call under ``torch.utils.checkpoint`` (seiko's default) and get
the KL's direct gradient at every step; the randomised truncation (K uniform on 1..50) is
replaced by a fixed ``--grad-steps`` (default 25, about its mean). The VAE and CLIP run in
``--decode-dtype`` (float32 by default: seiko's ``Finetuner.score`` runs the reward in 32-bit).

Measured: seconds per fine-tuning step, seconds per sampled batch (no grad, ``--steps`` DDIM
steps, CFG 7.5, then the VAE decode), and peak memory: ``torch.cuda.max_memory_allocated`` on a
GPU (reset before each phase, each path built alone), on CPU the process's peak RSS
(``resource.getrusage``; monotonic over the process, so the second path's includes the first's).
With ``--check`` (default in ``--tiny``) both paths are built from the same weights and one
step's loss and LoRA gradients are compared at the same noise.

On a GPU machine (about a minute to build and save the parts, then the runs):

    .venv/bin/python experiments/sd_speed.py --device cuda --batch 4 --repeats 3 \\
        --out experiments/results/sd_speed_h200.json

Here (CPU, to check the script; it says nothing about SD's speed):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/sd_speed.py --tiny --repeats 2 \\
        --out experiments/results/sd_speed_tiny_cpu.json
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a horse", "a photo of a zebra"]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SEED_RANGE = 2**31 - 1


@dataclass
class Settings:
    device: str = "cpu"
    tiny: bool = False
    batch: int = 4
    steps: int = 50
    grad_steps: int = 25
    dtype: str = "float32"          # the frozen UNet and text encoder (LoRA weights stay fp32)
    decode_dtype: str = "float32"   # the VAE and CLIP image tower
    gradient_checkpointing: bool = True  # the UNet's own (inside each checkpointed call)
    guidance_scale: float = 7.5
    eta: float = 1.0
    lora_rank: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.1
    grad_clip: float = 5.0
    kl_pretrained: float = 1e-4
    kl_previous: float = 1e-4
    seed: int = 0


# ---------------------------------------------------------------- the parts, built in code
def sd15_parts(seed: int = 0):
    """SD v1.5's UNet, VAE, text encoder (random weights), a CLIP tokenizer, and CLIP ViT-L/14's
    vision tower with projection."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from seiko.image.components import SD_SCHEDULER, Parts, build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(PROMPTS)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32, norm_eps=1e-5, act_fn="silu", downsample_padding=1, flip_sin_to_cos=True, freq_shift=0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, act_fn="silu", scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=768, hidden_act="quick_gelu"))
    return Parts(unet, vae, text, tokenizer, DDIMScheduler(**SD_SCHEDULER)), vision


def tiny_sd_parts(seed: int = 0):
    """``seiko.image.components.tiny_parts`` (latents 4 x 8 x 8, images 16 x 16) and a tiny CLIP tower."""
    from seiko.image.clip import ClipImageEmbedder
    from seiko.image.components import tiny_parts

    parts = tiny_parts(words=PROMPTS, seed=seed, sample_size=8)
    return parts, ClipImageEmbedder.tiny(seed=seed, image_size=32, embed_dim=32).model


def write_folder(directory: Path, tiny: bool, seed: int = 0) -> dict:
    """The parts as a diffusers folder (``directory/sd``) and a CLIP folder (``directory/clip``)."""
    from seiko.image.components import save_parts

    parts, vision = tiny_sd_parts(seed) if tiny else sd15_parts(seed)
    save_parts(parts, directory / "sd")
    vision.save_pretrained(directory / "clip")
    factor = 2 ** (len(parts.vae.config.block_out_channels) - 1)
    info = {"latent_shape": [parts.unet.config.in_channels, parts.unet.config.sample_size,
                             parts.unet.config.sample_size],
            "image_size": parts.unet.config.sample_size * factor,
            "embed_dim": vision.config.projection_dim,
            "params_millions": {name: round(sum(p.numel() for p in m.parameters()) / 1e6, 2) for name, m in
                                [("unet", parts.unet), ("vae", parts.vae), ("text_encoder", parts.text_encoder),
                                 ("clip_vision", vision)]},
            "unet_params": sum(p.numel() for p in parts.unet.parameters())}
    del parts, vision
    gc.collect()
    return info


# ---------------------------------------------------------------- shared by both paths
class FixedPrompts:
    """The prompts of sample i: PROMPTS[i % 4] whatever the purpose (no draws from the generator)."""

    def draw(self, num, generator=None, purpose="query"):
        return [PROMPTS[i % len(PROMPTS)] for i in range(num)]


def adapter_states(state: dict[str, Tensor], seed: int) -> tuple[dict, dict]:
    """(previous round's adapter, current adapter): nonzero LoRA weights, the same for both paths
    (a function of the keys and shapes only), so both KL terms are nonzero from the first step."""
    g = torch.Generator().manual_seed(seed + 17)
    previous = {k: 0.05 * torch.randn(state[k].shape, generator=g) for k in sorted(state)}
    current = {k: v + 0.02 * torch.randn(v.shape, generator=g) for k, v in previous.items()}
    return previous, current


class LinearReward(nn.Module):
    """r(e) = w . e + b on the CLIP embedding (a fitted linear reward model's shape), frozen."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed + 29)
        self.register_buffer("w", 10 * torch.randn(dim, generator=g) / math.sqrt(dim))
        self.register_buffer("b", torch.tensor(5.0))

    def forward(self, embeds: Tensor) -> Tensor:
        return embeds @ self.w + self.b


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def mib(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


def peak_rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kb / 1024 if sys.platform != "darwin" else kb / 2**20, 1)


def memory_now(device: str) -> float:
    return mib(torch.cuda.memory_allocated()) if device.startswith("cuda") else peak_rss_mib()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> float:
    return mib(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else peak_rss_mib()


def scaler_for(s: Settings):
    """A gradient scaler under fp16 on a GPU (Lightning's 16-mixed and accelerate's fp16 use one)."""
    return torch.amp.GradScaler("cuda", enabled=s.device.startswith("cuda") and s.dtype == "float16")


# ---------------------------------------------------------------- (a) seiko
def optimiser_step(loss: Tensor, params, optimizer, scaler, grad_clip: float) -> float:
    """Backward, unscale, clip, step: the same optimiser step on both paths."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


class SeikoPath:
    name = "seiko"

    def __init__(self, folder: Path, s: Settings, shape: tuple[int, ...]):
        from peft.utils import get_peft_model_state_dict

        from seiko.diffusion.ddim import DDIMDiffusion
        from seiko.domains.image import ImageDomain
        from seiko.image.clip import ClipImageEmbedder
        from seiko.image.policy import PromptedUNet

        self.s = s
        self.policy = PromptedUNet(str(folder / "sd"), lora_rank=s.lora_rank, guidance_scale=s.guidance_scale,
                                   gradient_checkpointing=s.gradient_checkpointing, dtype=s.dtype,
                                   local_files_only=True, seed=s.seed)
        previous, current = adapter_states(get_peft_model_state_dict(self.policy.unet, adapter_name="default"), s.seed)
        self.policy.load_checkpoint_state_dict(previous)
        self.refs = {"pretrained": self.policy.kl_reference("pretrained"),
                     "previous": self.policy.kl_reference("previous")}
        self.policy.load_checkpoint_state_dict(current)
        self.policy.to(s.device)
        self.family = DDIMDiffusion(shape, prompts=FixedPrompts(), num_steps=s.steps, eta=s.eta)
        embedder = ClipImageEmbedder.from_transformers(str(folder / "clip"), local_files_only=True)
        self.domain = ImageDomain(str(folder / "sd"), embedder=embedder, local_files_only=True, batch_size=s.batch)
        self.domain.vae.to(s.device, DTYPES[s.decode_dtype])
        self.domain.embedder.to(s.device, DTYPES[s.decode_dtype])
        self.objective = LinearReward(embedder.embed_dim, s.seed).to(s.device)
        self.weights = {"pretrained": s.kl_pretrained, "previous": s.kl_previous}
        self.optimizer = torch.optim.AdamW(self.policy.lora_parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.scaler = scaler_for(s)

    def generator(self, seed: int):
        return torch.Generator(device=self.s.device).manual_seed(seed)

    def _rollout(self, seed: int):
        from seiko.diffusion.sampler import relaxed_rollout

        return relaxed_rollout(self.policy, self.family, self.s.batch, self.refs, self.generator(seed),
                               grad_steps=self.s.grad_steps, use_checkpoint=True, device=self.s.device)

    def loss(self, seed: int) -> tuple[Tensor, dict]:
        """``BackpropFinetuner.training_step`` with a fixed truncation: the loss, and what it is made of."""
        self.policy.train()
        rollout = self._rollout(seed)
        with torch.autocast(torch.device(self.s.device).type, enabled=False):  # Finetuner.score
            reward = self.objective(self.domain.features(rollout.final.float()))
        loss = -reward.mean() + sum(self.weights[k] * v.mean() for k, v in rollout.kl.items())
        return loss, {"reward": float(reward.mean().detach()), **{f"kl_{k}": float(v.mean().detach()) for k, v in rollout.kl.items()}}

    def step(self, seed: int) -> float:
        return optimiser_step(self.loss(seed)[0], self.policy.lora_parameters(), self.optimizer, self.scaler,
                              self.s.grad_clip)

    @torch.no_grad()
    def sample(self, seed: int) -> Tensor:
        from seiko.diffusion.sampler import sample

        self.policy.eval()
        batch = sample(self.policy, self.family, self.s.batch, self.generator(seed), device=self.s.device,
                       purpose="evaluate")
        return self.domain.to_pixels(batch.latents)

    def lora_grads(self) -> dict[str, Tensor]:
        return {n: p.grad.detach().clone() for n, p in self.policy.unet.named_parameters()
                if "lora_" in n and ".default." in n and p.grad is not None}


# ---------------------------------------------------------------- (b) the plain diffusers + peft loop
class PlainPath:
    name = "plain"

    def __init__(self, folder: Path, s: Settings, shape: tuple[int, ...]):
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from peft import LoraConfig
        from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
        from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

        self.s, self.shape, dev = s, tuple(shape), s.device
        wdtype, ddtype = DTYPES[s.dtype], DTYPES[s.decode_dtype]
        sd = str(folder / "sd")
        self.tokenizer = CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer", local_files_only=True)
        self.text_encoder = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder", local_files_only=True) \
            .requires_grad_(False).eval().to(dev, wdtype)
        self.vae = AutoencoderKL.from_pretrained(sd, subfolder="vae", local_files_only=True) \
            .requires_grad_(False).eval().to(dev, ddtype)
        self.clip = CLIPVisionModelWithProjection.from_pretrained(str(folder / "clip"), local_files_only=True) \
            .requires_grad_(False).eval().to(dev, ddtype)
        self.scheduler = DDIMScheduler.from_pretrained(sd, subfolder="scheduler", local_files_only=True)
        self.scheduler.set_timesteps(s.steps)
        # the policy: the UNet with one LoRA adapter; the KL references: full frozen UNet copies
        self.unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet", local_files_only=True) \
            .requires_grad_(False).to(wdtype)
        self.ref_pretrained = UNet2DConditionModel.from_pretrained(sd, subfolder="unet", local_files_only=True) \
            .requires_grad_(False).eval().to(dev, wdtype)
        torch.manual_seed(s.seed)
        self.unet.add_adapter(LoraConfig(r=s.lora_rank, lora_alpha=s.lora_rank, init_lora_weights="gaussian",
                                         target_modules=TARGET_MODULES))
        previous, current = adapter_states(get_peft_model_state_dict(self.unet), s.seed)
        set_peft_model_state_dict(self.unet, previous)
        self.ref_previous = copy.deepcopy(self.unet).requires_grad_(False).eval().to(dev)
        set_peft_model_state_dict(self.unet, current)
        self.lora = [p for n, p in self.unet.named_parameters() if "lora_" in n]
        for p in self.lora:
            p.data = p.data.float()
            p.requires_grad_(True)
        for p in self.ref_previous.parameters():
            if p.dtype != wdtype and p.is_floating_point():
                p.data = p.data.to(wdtype)
        if s.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.unet.to(dev).train()
        self.objective = LinearReward(self.clip.config.projection_dim, s.seed).to(dev)
        self.optimizer = torch.optim.AdamW(self.lora, lr=s.lr, weight_decay=s.weight_decay)
        self.scaler = scaler_for(s)
        acp = self.scheduler.alphas_cumprod
        final = float(self.scheduler.final_alpha_cumprod)
        stride = self.scheduler.config.num_train_timesteps // s.steps
        self.coef = []  # per step: (t, abar, abar_prev, sigma), DDIM with eta
        for t in self.scheduler.timesteps.tolist():
            a = float(acp[t])
            a_prev = float(acp[t - stride]) if t - stride >= 0 else final
            sigma = s.eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
            self.coef.append((int(t), a, a_prev, sigma))

    @torch.no_grad()
    def text(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        ids = self.tokenizer(prompts + [""], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.s.device)
        emb = self.text_encoder(ids)[0]
        return emb[:-1], emb[-1:].expand(len(prompts), -1, -1)

    def eps(self, unet: nn.Module, x: Tensor, t: Tensor, cond: Tensor, uncond: Tensor) -> Tensor:
        """Classifier-free guidance: one UNet call on [uncond; cond]."""
        dev = torch.device(self.s.device).type
        with torch.autocast(dev, dtype=DTYPES[self.s.dtype], enabled=self.s.dtype != "float32"):
            out = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])).sample
        u, c = out.float().chunk(2)
        return u + self.s.guidance_scale * (c - u)

    @staticmethod
    def ddim_mean(eps: Tensor, x: Tensor, a: float, a_prev: float, sigma: float) -> Tensor:
        x0 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
        return a_prev ** 0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps

    def start(self, g: torch.Generator) -> Tensor:
        """Initial noise: one seed a sample drawn from ``g``, the sample's noise from its own seed
        (the draws seiko's chain makes, so both paths can be given the same noise)."""
        seeds = torch.randint(SEED_RANGE, (self.s.batch,), generator=g, device=g.device).tolist()
        return torch.stack([torch.randn(self.shape, generator=torch.Generator().manual_seed(sd))
                            for sd in seeds]).to(self.s.device)

    def features(self, latents: Tensor) -> Tensor:
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample.float()
        pixels = ((images + 1) / 2).clamp(0, 1)
        size = self.clip.config.image_size
        x = F.interpolate(pixels, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        emb = self.clip(pixel_values=((x - mean) / std).to(self.clip.dtype)).image_embeds.float()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def generator(self, seed: int):
        return torch.Generator(device=self.s.device).manual_seed(seed)

    def loss(self, seed: int) -> tuple[Tensor, dict]:
        s, dev = self.s, self.s.device
        g = self.generator(seed)
        x = self.start(g)
        cond, uncond = self.text(FixedPrompts().draw(s.batch))
        kl_pre = torch.zeros(s.batch, device=dev)
        kl_prev = torch.zeros(s.batch, device=dev)
        first_grad = s.steps - s.grad_steps
        for step, (t, a, a_prev, sigma) in enumerate(self.coef):
            if step <= first_grad:
                x = x.detach()
            time = torch.full((s.batch,), t, dtype=torch.long, device=dev)
            eps = checkpoint(self.eps, self.unet, x, time, cond, uncond, use_reentrant=False)
            mean = self.ddim_mean(eps, x, a, a_prev, sigma)
            with torch.no_grad():
                mean_pre = self.ddim_mean(self.eps(self.ref_pretrained, x.detach(), time, cond, uncond), x, a, a_prev, sigma)
                mean_prev = self.ddim_mean(self.eps(self.ref_previous, x.detach(), time, cond, uncond), x, a, a_prev, sigma)
            kl_pre = kl_pre + ((mean - mean_pre) ** 2).flatten(1).sum(1) / (2 * sigma**2)
            kl_prev = kl_prev + ((mean - mean_prev) ** 2).flatten(1).sum(1) / (2 * sigma**2)
            x = mean + sigma * torch.randn(mean.shape, generator=g, device=dev)
        reward = self.objective(self.features(x))
        loss = -reward.mean() + s.kl_pretrained * kl_pre.mean() + s.kl_previous * kl_prev.mean()
        return loss, {"reward": float(reward.mean().detach()), "kl_pretrained": float(kl_pre.mean().detach()),
                      "kl_previous": float(kl_prev.mean().detach())}

    def step(self, seed: int) -> float:
        return optimiser_step(self.loss(seed)[0], self.lora, self.optimizer, self.scaler, self.s.grad_clip)

    @torch.no_grad()
    def sample(self, seed: int) -> Tensor:
        """The pipeline's loop: DDIMScheduler.step with eta, CFG 7.5, then the VAE decode."""
        s = self.s
        self.unet.eval()
        g = torch.Generator().manual_seed(seed)
        x = self.start(g)
        cond, uncond = self.text(FixedPrompts().draw(s.batch))
        for t in self.scheduler.timesteps.tolist():
            time = torch.full((s.batch,), t, dtype=torch.long, device=s.device)
            eps = self.eps(self.unet, x, time, cond, uncond)
            x = self.scheduler.step(eps, t, x, eta=s.eta, generator=g).prev_sample
        images = self.vae.decode(x.to(self.vae.dtype) / self.vae.config.scaling_factor).sample.float()
        return ((images + 1) / 2).clamp(0, 1)

    def lora_grads(self) -> dict[str, Tensor]:
        return {n: p.grad.detach().clone() for n, p in self.unet.named_parameters()
                if "lora_" in n and p.grad is not None}


# ---------------------------------------------------------------- measuring
def time_calls(fn, s: Settings, warmup: int, repeats: int, base_seed: int) -> list[float]:
    for i in range(warmup):
        fn(base_seed + 1000 + i)
    sync(s.device)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(base_seed + i)
        sync(s.device)
        times.append(time.perf_counter() - start)
    return times


def measure(cls, folder: Path, s: Settings, shape, warmup: int, repeats: int, phases) -> dict:
    reset_peak(s.device)
    before = memory_now(s.device)
    start = time.perf_counter()
    path = cls(folder, s, shape)
    sync(s.device)
    out = {"build_s": round(time.perf_counter() - start, 2),
           ("weights_mib" if s.device.startswith("cuda") else "rss_after_build_mib"): memory_now(s.device)}
    if s.device.startswith("cuda"):
        out["weights_mib"] = round(out["weights_mib"] - before, 1)
    if "step" in phases:
        reset_peak(s.device)
        times = time_calls(path.step, s, warmup, repeats, s.seed)
        out.update(step_s=[round(t, 4) for t in times], step_s_median=round(statistics.median(times), 4),
                   peak_step_mib=peak(s.device))
    if "sample" in phases:
        reset_peak(s.device)
        times = time_calls(path.sample, s, warmup, repeats, s.seed + 500)
        out.update(sample_s=[round(t, 4) for t in times], sample_s_median=round(statistics.median(times), 4),
                   peak_sample_mib=peak(s.device))
    del path
    gc.collect()
    if s.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def compare(folder: Path, s: Settings, shape, seed: int = 123) -> dict:
    """One step's loss and LoRA gradients through both paths, from the same weights and noise."""
    seiko, plain = SeikoPath(folder, s, shape), PlainPath(folder, s, shape)
    out = {}
    for path in (seiko, plain):
        loss, parts = path.loss(seed)
        loss.backward()
        out[path.name] = {"loss": float(loss.detach()), **parts}
    gs, gp = seiko.lora_grads(), plain.lora_grads()
    assert gs.keys() == gp.keys() and gs, "the two paths' LoRA parameters differ"
    diff = max(float((gs[k] - gp[k]).abs().max()) for k in gs)
    scale = max(float(gp[k].abs().max()) for k in gp)
    norm_s = math.sqrt(sum(float(v.pow(2).sum()) for v in gs.values()))
    norm_p = math.sqrt(sum(float(v.pow(2).sum()) for v in gp.values()))
    out.update(lora_tensors=len(gs), loss_abs_diff=abs(out["seiko"]["loss"] - out["plain"]["loss"]),
               grad_max_abs_diff=diff, grad_max_abs=scale, grad_norm_seiko=norm_s, grad_norm_plain=norm_p,
               grad_max_rel_diff=diff / scale if scale else float("nan"))
    del seiko, plain
    gc.collect()
    return out


def table(result: dict) -> str:
    unit = "MiB (cuda max allocated)" if result["settings"]["device"].startswith("cuda") else "MiB (peak RSS)"
    rows = ["| path | s / fine-tuning step | s / sampled batch | peak, step: " + unit + " | peak, sample | build s |",
            "|---|---|---|---|---|---|"]
    for name, r in result["paths"].items():
        rows.append(f"| {name} | {r.get('step_s_median', '-')} | {r.get('sample_s_median', '-')} | "
                    f"{r.get('peak_step_mib', '-')} | {r.get('peak_sample_mib', '-')} | {r['build_s']} |")
    ratios = result.get("ratios", {})
    if ratios:
        rows.append("")
        rows.append("seiko / plain: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    return "\n".join(rows)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="samples per step (default 4; --tiny 2)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50; --tiny 8)")
    p.add_argument("--grad-steps", type=int, default=None,
                   help="fixed truncation: the last K steps carry the state's gradient (default 25 = about the "
                        "mean of SEIKO's uniform 1..50; --tiny 4)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="frozen UNet and text encoder (default float16 on cuda, float32 on cpu)")
    p.add_argument("--decode-dtype", choices=sorted(DTYPES), default="float32",
                   help="VAE and CLIP image tower (float32: what seiko's Finetuner.score runs)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="the UNet's own gradient checkpointing (domain=sd15's default); every policy call is "
                        "also checkpointed as a whole in both paths")
    p.add_argument("--tiny", action="store_true", help="tiny_parts at 8 x 8 latents: checks the script in seconds")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--phases", nargs="+", choices=["step", "sample"], default=["step", "sample"])
    p.add_argument("--paths", nargs="+", choices=["seiko", "plain"], default=["seiko", "plain"])
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=None,
                   help="compare one step's loss and LoRA gradients across the paths (default: on with --tiny)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where to write the parts (default: a temporary folder)")
    p.add_argument("--out", default=None, help="results JSON")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    s = Settings(device=args.device, tiny=args.tiny, batch=args.batch or (2 if args.tiny else 4),
                 steps=args.steps or (8 if args.tiny else 50), dtype=args.dtype or ("float16" if cuda else "float32"),
                 decode_dtype=args.decode_dtype, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed)
    s.grad_steps = min(args.grad_steps or (4 if args.tiny else 25), s.steps)
    from seiko.image.components import quiet

    quiet()
    with tempfile.TemporaryDirectory(prefix="sd-speed-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        info = write_folder(folder, args.tiny, args.seed)
        info["write_s"] = round(time.perf_counter() - start, 2)
        shape = tuple(info["latent_shape"])
        wbytes = torch.tensor([], dtype=DTYPES[s.dtype]).element_size()
        result = {
            "what": "SD v1.5 architecture with RANDOM weights" if not args.tiny else
                    "tiny_parts (a few MB, 8x8 latents): checks the script, says nothing about SD's speed",
            "settings": asdict(s), "warmup": args.warmup, "repeats": args.repeats, "parts": info,
            "unet_weights_mib": mib(info["unet_params"] * wbytes),
            "five_unet_copies_mib": mib(5 * info["unet_params"] * wbytes),
            "memory": "torch.cuda.max_memory_allocated, reset before each phase, each path built alone" if cuda else
                      "peak RSS of the process (resource.getrusage ru_maxrss): monotonic, so a later path's "
                      "figure includes everything before it",
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
                            "threads": torch.get_num_threads()},
            "paths": {},
        }
        for name in args.paths:
            cls = SeikoPath if name == "seiko" else PlainPath
            result["paths"][name] = measure(cls, folder, s, shape, args.warmup, args.repeats, args.phases)
        if {"seiko", "plain"} <= result["paths"].keys():
            a, b = result["paths"]["seiko"], result["paths"]["plain"]
            result["ratios"] = {f"{k}": round(a[f"{k}_s_median"] / b[f"{k}_s_median"], 3)
                                for k in ("step", "sample") if f"{k}_s_median" in a and f"{k}_s_median" in b}
        if args.check if args.check is not None else args.tiny:
            result["check"] = compare(folder, s, shape)
    md = table(result)
    result["table"] = md
    print(md)
    if "check" in result:
        c = result["check"]
        print(f"\nsame weights, same noise: loss seiko {c['seiko']['loss']:.6f} plain {c['plain']['loss']:.6f}; "
              f"LoRA gradients max |diff| {c['grad_max_abs_diff']:.2e} (max |grad| {c['grad_max_abs']:.2e})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
