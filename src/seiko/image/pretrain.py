"""Pretrain the CPU image default: the digit scorer, then a small text-to-image diffusion model.

    python -m seiko.image.pretrain --out src/seiko/assets/image_digits --steps 3500

writes the asset folder: ``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/`` (the diffusers
layout that ``seiko.image.components.load_parts`` reads; no ``vae/``: the diffusion runs on the
16x16 gray pixels, scaled to [-1, 1] as SD's VAE decodes), ``scorer/`` (``load_scorer``),
``pretrain.json`` (the command and the metrics) and ``samples.png`` (a grid of samples).

The diffusion model is Stable Diffusion's recipe at a small size: UNet2DConditionModel
cross-attending to a CLIPTextModel (trained jointly; its CLIPTokenizer is built in code), SD
1.5's noise schedule, epsilon prediction, MSE on the noise at a uniform timestep, 10% of the
prompts dropped to "" for classifier-free guidance; the saved weights are an EMA. Deterministic
for a seed (on one thread).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from seiko.image.components import Parts, save_parts, tiny_parts
from seiko.image.digits import CHANNELS, DIGIT_PROMPTS, IMAGE_SIZE, NUM_CLASSES, digits_split, prompt_of
from seiko.image.scorer import SCORER_DIR, DigitNet, load_scorer, save_scorer

UNET_CHANNELS = (32, 64, 64)
CROSS_ATTENTION_DIM = 32


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- the scorer
def non_digits(n: int, real: Tensor, generator: torch.Generator) -> Tensor:
    """``n`` images that are no digit: uniform / Gaussian noise, flat gray, smooth random blobs,
    pixel-shuffled, inverted and drowned-in-noise digits, in turn."""
    size = real.shape[-1]
    kinds = torch.randint(0, 7, (n,), generator=generator)
    out = torch.empty(n, 1, size, size)
    pick = real[torch.randint(0, len(real), (n,), generator=generator)]
    for i, kind in enumerate(kinds.tolist()):
        if kind == 0:
            x = torch.rand(1, size, size, generator=generator)
        elif kind == 1:
            x = torch.rand(1, generator=generator) + 0.35 * torch.randn(1, size, size, generator=generator)
        elif kind == 2:
            x = torch.full((1, size, size), float(torch.rand(1, generator=generator)))
        elif kind == 3:
            cells = int(torch.randint(2, 9, (1,), generator=generator))
            coarse = torch.randn(1, 1, cells, cells, generator=generator) * 3 + float(torch.randn(1, generator=generator)) * 2
            x = torch.sigmoid(F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False))[0]
        elif kind == 4:
            x = pick[i].flatten()[torch.randperm(size * size, generator=generator)].view(1, size, size)
        elif kind == 5:
            x = 1 - pick[i]
        else:
            x = pick[i] + 0.5 * torch.randn(1, size, size, generator=generator)
        out[i] = x.clamp(0, 1)
    return out


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Digits still: shifts of up to one pixel, a little contrast change and pixel noise."""
    n = len(x)
    shifts = torch.randint(-1, 2, (n, 2), generator=generator)
    x = torch.stack([torch.roll(im, shifts=(int(a), int(b)), dims=(-2, -1)) for im, (a, b) in zip(x, shifts)])
    gain = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator)
    noise = 0.05 * torch.rand(n, 1, 1, 1, generator=generator) * torch.randn(x.shape, generator=generator)
    return (x * gain + noise).clamp(0, 1)


def train_scorer(seed: int, steps: int, batch_size: int = 128) -> DigitNet:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = digits_split("train")
    net = DigitNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    junk = batch_size // 3
    start = time.time()
    for step in range(steps):
        lr = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        index = torch.randint(0, len(x), (batch_size - junk,), generator=generator)
        images = torch.cat([augment(x[index], generator), non_digits(junk, x, generator)])
        labels = torch.cat([y[index], torch.full((junk,), NUM_CLASSES)])
        embedding, logits, ink = net(images)
        loss = F.cross_entropy(logits, labels) + 10 * F.mse_loss(ink, images.mean(dim=(1, 2, 3)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"scorer step {step:5d}  loss {loss.item():.4f}  ({time.time() - start:.0f}s)")
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------- the diffusion model
def encode_prompts(parts: Parts, prompts) -> Tensor:
    ids = parts.tokenizer(list(prompts), padding="max_length", max_length=parts.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids
    return parts.text_encoder(ids)[0]


@torch.no_grad()
def sample_images(parts: Parts, prompts, steps: int = 50, guidance: float = 5.0, eta: float = 1.0,
                  seed: int = 0, batch_size: int = 128) -> Tensor:
    """DDIM (diffusers' DDIMScheduler, ``steps`` steps, ``eta``) with classifier-free guidance on the
    pixel-space model: pixels [N, C, H, W] in [0, 1], one per prompt."""
    from diffusers import DDIMScheduler

    prompts = list(prompts)
    generator = torch.Generator().manual_seed(seed)
    unet, size = parts.unet, parts.unet.config.sample_size
    unet.eval(), parts.text_encoder.eval()
    out = []
    for begin in range(0, len(prompts), batch_size):
        chunk = prompts[begin:begin + batch_size]
        scheduler = DDIMScheduler.from_config(parts.scheduler.config)
        scheduler.set_timesteps(steps)
        text = encode_prompts(parts, chunk + [""] * len(chunk))
        x = torch.randn(len(chunk), unet.config.in_channels, size, size, generator=generator)
        for t in scheduler.timesteps:
            eps = unet(torch.cat([x, x]), t, text).sample
            cond, uncond = eps.chunk(2)
            eps = uncond + guidance * (cond - uncond)
            x = scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
        out.append(((x / parts.vae_scale + 1) / 2).clamp(0, 1))
    return torch.cat(out)


def build_parts(seed: int) -> Parts:
    return tiny_parts(DIGIT_PROMPTS, seed=seed, sample_size=IMAGE_SIZE, channels=UNET_CHANNELS,
                      cross_attention_dim=CROSS_ATTENTION_DIM, vae=False, image_channels=CHANNELS)


def train_diffusion(seed: int, steps: int, batch_size: int, lr: float, drop: float, ema_decay: float) -> Parts:
    parts = build_parts(seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    x, y = digits_split("train")
    x = x * 2 - 1
    unet, text_encoder = parts.unet.train(), parts.text_encoder.train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    alphas = parts.scheduler.alphas_cumprod.float()
    warmup = min(200, steps // 10 + 1)
    start, running = time.time(), None
    for step in range(steps):
        scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        index = torch.randint(0, len(x), (batch_size,), generator=generator)
        images = x[index]
        prompts = [p if r >= drop else "" for p, r in zip(prompt_of(y[index]), torch.rand(batch_size, generator=generator).tolist())]
        t = torch.randint(0, len(alphas), (batch_size,), generator=generator)
        noise = torch.randn(images.shape, generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * images + (1 - a).sqrt() * noise
        pred = unet(noisy, t, encode_prompts(parts, prompts)).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            elapsed = time.time() - start
            log(f"diffusion step {step:5d}  loss {running:.4f}  lr {lr * scale:.2e}  "
                f"({elapsed:.0f}s, {elapsed / (step + 1):.2f} s/step)")
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    unet.eval(), text_encoder.eval()
    return parts


# ---------------------------------------------------------------- the report
@torch.no_grad()
def metrics(pixels: Tensor, labels: Tensor, scorer) -> dict:
    """Reward mean / std, mean quality, share with quality >= 0.5, agreement with the label."""
    reward = scorer.reward(pixels)
    quality = scorer.quality(pixels)
    predicted = scorer.quality.predict(pixels)
    return {"n": len(pixels), "reward_mean": round(reward.mean().item(), 4), "reward_std": round(reward.std().item(), 4),
            "quality_mean": round(quality.mean().item(), 4),
            "quality_ge_0.5": round((quality >= 0.5).float().mean().item(), 4),
            "agreement": round((predicted == labels).float().mean().item(), 4)}


def save_grid(pixels: Tensor, path: Path, columns: int = 16) -> None:
    from PIL import Image

    from seiko.image.records import tile, to_uint8

    array = tile(to_uint8(pixels.mean(1, keepdim=True)), columns, gap=1, border=1)[..., 0]
    Image.fromarray(array).resize((array.shape[1] * 2, array.shape[0] * 2), Image.NEAREST).save(path)


def evaluate(parts: Parts, scorer, num: int = 256, steps: int = 50, guidance: float = 5.0, seed: int = 0):
    labels = torch.arange(num) % NUM_CLASSES
    pixels = sample_images(parts, prompt_of(labels), steps=steps, guidance=guidance, eta=1.0, seed=seed)
    held_x, held_y = digits_split("held_out")
    return pixels, {"samples": metrics(pixels, labels, scorer), "held_out": metrics(held_x[:num], held_y[:num], scorer),
                    "noise": metrics(torch.rand(num, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed)),
                                     labels, scorer)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seiko.image.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the asset folder to write")
    parser.add_argument("--steps", type=int, default=3500, help="diffusion training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--drop", type=float, default=0.1, help="share of prompts replaced by '' (for CFG)")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--scorer-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-samples", type=int, default=256)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--eval-steps", type=int, default=50, help="DDIM steps of the report's samples")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    command = "python -m seiko.image.pretrain " + " ".join(sys.argv[1:] if argv is None else argv)
    log(f"$ {command}")
    begin = time.time()

    net = train_scorer(args.seed, args.scorer_steps)
    save_scorer(net, out / SCORER_DIR, extra={"seed": args.seed, "steps": args.scorer_steps})
    scorer = load_scorer(out)
    held_x, held_y = digits_split("held_out")
    with torch.no_grad():
        accuracy = (scorer.quality.predict(held_x) == held_y).float().mean().item()
    log(f"scorer: held-out accuracy {accuracy:.4f}  ({time.time() - begin:.0f}s)")
    scorer_seconds = time.time() - begin

    parts = train_diffusion(args.seed, args.steps, args.batch_size, args.lr, args.drop, args.ema)
    save_parts(parts, out)
    train_seconds = time.time() - begin - scorer_seconds
    log(f"diffusion trained in {train_seconds:.0f}s; parts saved to {out}")

    pixels, report = evaluate(parts, scorer, num=args.eval_samples, steps=args.eval_steps,
                              guidance=args.guidance, seed=args.seed)
    save_grid(pixels[:128], out / "samples.png")
    for name, values in report.items():
        log(f"{name:>9}: " + "  ".join(f"{k} {v}" for k, v in values.items()))
    unet_params = sum(p.numel() for p in parts.unet.parameters())
    text_params = sum(p.numel() for p in parts.text_encoder.parameters())
    summary = {"command": command, "seed": args.seed, "scorer_held_out_accuracy": round(accuracy, 4),
               "unet_parameters": unet_params, "text_encoder_parameters": text_params,
               "image": [CHANNELS, IMAGE_SIZE, IMAGE_SIZE], "vae": False, "unet_channels": list(UNET_CHANNELS),
               "sampler": {"scheduler": "DDIMScheduler", "steps": args.eval_steps, "eta": 1.0, "guidance": args.guidance},
               "seconds": {"scorer": round(scorer_seconds), "diffusion": round(train_seconds),
                           "total": round(time.time() - begin)}, "threads": args.threads, **report}
    (out / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done in {time.time() - begin:.0f}s")


if __name__ == "__main__":
    main()
