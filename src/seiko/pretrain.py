"""Pretrain a diffusion policy on a domain's data and save it as a safetensors checkpoint.

    python -m seiko.pretrain domain=protein trainer.max_steps=20000 out=assets/x.safetensors

The committed default checkpoints were made by ``make pretrain`` (domain.seed=0) and the commands in docs/how-it-works.md, 'Checkpoints'.
"""
from __future__ import annotations

import json
import time

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seiko import sharding
from seiko.checkpoint import load_weights, read_spec, save_policy
from seiko.cli_support import CONFIG_DIR, build_trainer
from seiko.policy import DiffusionPolicy


class FeasibilityCheck:
    """Every ``every`` steps: sample, measure feasibility, save the checkpoint if it is the best.

    Long CPU pretraining can then be stopped at any time and still leave its best model.
    """

    def __init__(self, domain, spec: dict, out: str, every: int, num: int = 500):
        self.domain, self.spec, self.out, self.every, self.num = domain, spec, out, every, num
        self.best = -1.0

    def __call__(self, policy: DiffusionPolicy, step: int) -> float:
        gen = torch.Generator().manual_seed(step)
        samples = policy.sample(self.num, gen).cpu()
        feasibility = self.domain.is_feasible(samples).float().mean().item()
        if feasibility > self.best:
            self.best = feasibility
            spec = dict(self.spec, pretrain={"feasibility": feasibility, "steps": step, "num_eval": self.num})
            save_policy(self.out, policy.denoiser, spec)
        metrics = {k: round(v, 4) for k, v in self.domain.metrics(self.domain.decode(samples)).items()}
        print(json.dumps({"step": step, "feasibility": feasibility, "best": self.best, **metrics}), flush=True)
        return feasibility


def _callback(check: FeasibilityCheck):
    import lightning as L

    class _Check(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = trainer.global_step
            if step % check.every == 0 and trainer.is_global_zero:
                pl_module.log("pretrain/feasibility", check(pl_module, step))

    return _Check()


def pretrain(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.seed)
    torch.set_flush_denormal(True)  # denormal weights slowed CPU steps tenfold
    domain = instantiate(cfg.domain.problem)
    denoiser_cfg = OmegaConf.to_container(cfg.domain.denoiser, resolve=True)
    family_cfg = OmegaConf.to_container(cfg.domain.family, resolve=True)
    policy = DiffusionPolicy(instantiate(denoiser_cfg), instantiate(family_cfg), domain=domain,
                             **OmegaConf.to_container(cfg.pretrain, resolve=True))
    spec = {"denoiser": denoiser_cfg, "family": family_cfg,
            "problem": OmegaConf.to_container(cfg.domain.problem, resolve=True)}
    if cfg.get("init"):  # continue an earlier pretraining: its weights, a fresh schedule (and data stream, by seed)
        load_weights(policy.denoiser, cfg.init)
        spec["init"] = {"path": str(cfg.init), "pretrain": read_spec(cfg.init).get("pretrain")}
    check = FeasibilityCheck(domain, spec, cfg.out, cfg.eval_every, cfg.eval_num) if cfg.eval_every else None
    callbacks = [_callback(check)] if check else []
    trainer = build_trainer(cfg.trainer, max_steps=cfg.max_steps, logger_dir=cfg.log_dir, name="pretrain",
                            callbacks=callbacks)
    start = time.time()
    sharding.fit(trainer, policy)
    policy.to("cpu")
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    samples = torch.cat([policy.sample(cfg.eval_num, gen) for _ in range(cfg.eval_batches)])
    report = {"feasibility": domain.is_feasible(samples).float().mean().item(),
              "loss": float(trainer.callback_metrics.get("pretrain/loss", float("nan"))),
              "steps": trainer.global_step, "seconds": round(time.time() - start, 1), "num_eval": len(samples)}
    if check is None or report["feasibility"] >= check.best:  # else the best periodic one stays
        save_policy(cfg.out, policy.denoiser, dict(spec, pretrain=report))
    print(json.dumps(report))
    return report


@hydra.main(config_path=str(CONFIG_DIR), config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    pretrain(cfg)


if __name__ == "__main__":
    main()
