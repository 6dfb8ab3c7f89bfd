"""Images, CPU stand-in: how far can one round of backprop fine-tuning move the digits model when
the objective is the oracle itself?

Why: on the stand-in every SEIKO strategy ends within 0.01 of the pretrained model's ink coverage
(docs/image-benchmark.md), so the strategies cannot separate. That can come from the reward model,
from the strategy or from the fine-tuner. This script takes the first two out: it fine-tunes the
round-0 policy on the true ink coverage (differentiable, in units of the pretrained samples'
spread, as the loop scales r_hat), with the run's own fine-tuner, KL terms and sampler, and
measures the ink of fresh samples (fixed seeds) before and after, for several learning rates and
step counts. ``--gradcheck`` also checks the gradient of that objective in the adapter: a step
along it against its first-order prediction, and the cosine between gradients of different
batches (is the direction consistent, or noise?).

    .venv/bin/python experiments/image_finetune_reach.py --settings 3e-4:10 3e-3:10 3e-3:40 1e-2:40 --gradcheck
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from bench_common import say

INK_SCALE = 0.033  # std of the pretrained samples' ink (docs/image-default.md): the loop's r_hat / std(labels)


class InkObjective(torch.nn.Module):
    """The oracle as the fine-tuning objective: ink coverage of pixels, in units of its spread."""

    def __init__(self):
        super().__init__()
        from seiko.image.scorer import InkReward

        self.ink = InkReward()

    def forward(self, pixels):
        return self.ink(pixels) / INK_SCALE


def build(lr: float, steps: int, seed: int, out: Path, extra: list[str] = ()):
    from seiko.api import build_loop, compose

    shutil.rmtree(out, ignore_errors=True)  # a scratch run: build_loop refuses to overwrite a ledger
    cfg = compose(["domain=image", "strategy=ucb", "budget.per_round=[64]", "progress=false", "logger=none",
                   f"seed={seed}", f"finetune.lr={lr}", f"finetune.steps={steps}", *extra])
    loop = build_loop(cfg, out)
    return loop.method, loop.domain


def fresh_ink(method, domain, num: int) -> float:
    """Mean ink of ``num`` fresh samples of the current policy, drawn from fixed seeds."""
    with torch.no_grad():
        batch = method.sample(num, torch.Generator().manual_seed(123))
        return float(InkObjective().ink(domain.to_pixels(batch.latents)).mean())


def reach(lr: float, steps: int, seed: int, num: int, out: Path, extra: list[str] = ()) -> dict:
    method, domain = build(lr, steps, seed, out / f"lr{lr}_steps{steps}", extra)
    before, start = fresh_ink(method, domain, num), time.time()
    metrics = method.finetune(0, objective=InkObjective(), features=domain.to_pixels, labelled=None)
    after = fresh_ink(method, domain, num)
    return {"lr": lr, "steps": steps, "ink_before": before, "ink_after": after, "gain": after - before,
            "kl_pretrained": float(metrics["finetune/kl_pretrained"]), "seconds": time.time() - start}


def gradcheck(seed: int, out: Path, extra: list[str] = ()) -> dict:
    """Directional finite differences of the loss in the adapter, and gradient cosines across batches."""
    method, domain = build(3e-4, 10, seed, out / "gradcheck", extra)
    ft = method.finetune_factory(method.denoiser, method.family, method.pretrained, method.previous, seed=seed,
                                 objective=InkObjective(), features=domain.to_pixels, labelled=None)
    ft.log = lambda *a, **k: None  # outside a Trainer
    ft.weights = {"pretrained": 0.0, "previous": 0.0}  # the reward term alone
    params = [p for p in method.denoiser.parameters() if p.requires_grad]
    method.denoiser.train()

    def grad(index: int) -> tuple[float, torch.Tensor]:
        for p in params:
            p.grad = None
        loss = ft.training_step(index, 0)
        loss.backward()
        return float(loss.detach()), torch.cat([p.grad.flatten() for p in params])

    ft.truncation = method.family.num_steps  # through the whole chain: the rollout is then deterministic
    loss, g = grad(0)
    steps = []
    for eps in (1e-3, 1e-2, 1e-1):
        offsets = torch.split(-eps * g / g.norm(), [p.numel() for p in params])
        with torch.no_grad():
            for p, d in zip(params, offsets):
                p += d.view_as(p)
            moved = float(ft.training_step(0, 0))
            for p, d in zip(params, offsets):
                p -= d.view_as(p)
        steps.append({"step_norm": eps, "loss_change": moved - loss, "predicted": -eps * float(g.norm())})
    cosines = {}
    for truncation, batch in ((method.family.num_steps, 8), ("random", 8), ("random", 32)):
        ft.truncation, ft.batch_size = truncation, batch
        grads = torch.stack([grad(i)[1] for i in range(4)])
        grads = grads / grads.norm(dim=1, keepdim=True)
        pairs = (grads @ grads.T)[torch.triu_indices(4, 4, 1).unbind()]
        cosines[f"truncation={truncation} batch={batch}"] = [round(float(c), 3) for c in pairs]
    return {"trainable": sum(p.numel() for p in params), "finite_differences": steps, "cosines": cosines}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=["3e-4:10", "3e-3:10", "3e-4:40", "3e-3:40", "1e-2:40"],
                   metavar="LR:STEPS", help="fine-tuning learning rate and optimiser steps of the round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=128, help="fresh samples measured before and after")
    p.add_argument("--gradcheck", action="store_true")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="Hydra override (repeatable)")
    p.add_argument("--out", default="experiments/runs/image_reach", help="scratch run folders (git-ignored)")
    p.add_argument("--results", default="experiments/results/image_reach.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    result = {"command": " ".join(["experiments/image_finetune_reach.py", *(argv or sys.argv[1:])]), "rows": []}
    if args.gradcheck:
        result["gradcheck"] = gradcheck(args.seed, out, args.override)
        say(f"gradcheck: {json.dumps(result['gradcheck'])}")
    for setting in args.settings:
        lr, steps = setting.split(":")
        row = reach(float(lr), int(steps), args.seed, args.num, out, args.override)
        result["rows"].append(row)
        say(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
