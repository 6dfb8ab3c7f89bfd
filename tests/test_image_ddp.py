"""Multi-process fine-tuning of the image policy's LoRA adapter (Lightning DDP, 2 gloo CPU ranks).

ddpo-pytorch's issue 10: LoRA layers that lived outside the module DDP wrapped were never
synchronised, so every GPU trained its own adapter. Here the adapter lives inside the UNet inside
the Finetuner that Lightning wraps, and its KL references are ``AdapterView``s on the same
weights, so DDP averages the adapter's gradients. These tests check that on two CPU ranks that
each draw different rollouts: the gradients each rank steps with are the same, and are the mean
of the two ranks' own gradients (what one process gets on the union of both batches); the
adapters after the step are equal on both ranks, moved, and equal to that one-process step.
The whole-run test (popen: every rank runs the script, as torchrun and SLURM start them) also
checks that only rank 0 asks the oracle and writes the checkpoints (ddpo-pytorch's issue 13).
"""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import two_rank_trainer
from test_image_domain import PROMPTS, sd_dir, tiny_image  # noqa: F401  (sd_dir: the tiny SD fixture)

from seiko.diffusion.ddim import DDIMDiffusion
from seiko.distributed import global_rank
from seiko.finetune import BackpropFinetuner
from seiko.image.policy import PromptedUNet


# ------------------------------------------------------------------ picklable pieces (spawned ranks import this module)
class Prompts:
    """The train prompts, drawn with the rollout's generator: different steps, different prompts."""

    def draw(self, num, generator, purpose="train"):
        return [PROMPTS[int(i)] for i in torch.randint(len(PROMPTS), (num,), generator=generator)]


def identity(x):
    return x


def objective(latents):
    """A smooth, nonlinear stand-in for the round's optimistic reward (per sample)."""
    return -(latents - 0.3).pow(2).flatten(1).mean(-1) + latents.flatten(1)[:, ::3].sin().mean(-1)


def adapter(module) -> dict[str, torch.Tensor]:
    """A copy of the adapter: ``checkpoint_state_dict`` hands out views of the live fp32 weights."""
    return {k: v.clone() for k, v in module.denoiser.checkpoint_state_dict().items()}


def lora_grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.denoiser.unet.named_parameters()
            if "lora_" in n and ".default." in n and p.grad is not None}


class RecordingBackprop(BackpropFinetuner):
    """BackpropFinetuner that writes, per rank, the step indices it drew, the gradients it stepped
    with (after DDP's all-reduce: ``on_before_optimizer_step`` runs after backward), and its
    adapter before and after the fit. ``finetune.module._target_`` in a whole run."""

    def __init__(self, *args, record_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_dir = str(record_dir)

    def on_train_start(self):
        self._record = {"rank": self.global_rank, "world_size": self.trainer.world_size, "pid_rank": global_rank(),
                        "before": adapter(self), "indices": [], "grads": []}

    def on_train_batch_start(self, batch, batch_idx):
        self._record["indices"].append(int(batch))

    def on_before_optimizer_step(self, optimizer):
        self._record["grads"].append(lora_grads(self))

    def on_train_end(self):
        self._record["after"] = adapter(self)
        out = Path(self.record_dir)
        out.mkdir(parents=True, exist_ok=True)
        fit = len(list(out.glob(f"rank{self.global_rank}_fit*.pt")))
        torch.save(self._record, out / f"rank{self.global_rank}_fit{fit}.pt")


class RankLoggingOracle:
    """Wraps the run's oracle; one line per batch naming the rank (process) that asked it."""

    def __init__(self, oracle, log: str):
        self.oracle, self.log = oracle, log

    def bind(self, domain):
        self.oracle.bind(domain)
        return self

    def __call__(self, designs):
        with open(self.log, "a") as f:
            f.write(f"{global_rank()} {len(designs)}\n")
        return self.oracle(designs)


def load_records(directory: Path, rank: int) -> list[dict]:
    files = sorted(directory.glob(f"rank{rank}_fit*.pt"), key=lambda p: int(p.stem.split("fit")[1]))
    return [torch.load(f, weights_only=False) for f in files]


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ------------------------------------------------------------------ the fine-tuner alone, spawned ranks
def make_finetuner(sd_dir, record_dir, steps: int) -> RecordingBackprop:
    torch.manual_seed(0)
    policy = PromptedUNet(str(sd_dir), lora_rank=4, guidance_scale=2.0, local_files_only=True, seed=0)
    with torch.no_grad():  # a previous round's adapter, so the KL to it is not trivially zero
        for p in policy.lora_parameters():
            p.add_(0.05 * torch.randn_like(p))
    previous = policy.kl_reference("previous")
    family = DDIMDiffusion((4, 8, 8), prompts=Prompts(), num_steps=4, eta=1.0)
    return RecordingBackprop(policy, family, policy.kl_reference("pretrained"), previous,
                             kl_pretrained=0.01, kl_previous=0.01, lr=1e-3, batch_size=2, steps=steps, seed=3,
                             objective=objective, features=identity, truncation="random",
                             record_dir=str(record_dir))


def test_two_ranks_average_lora_gradients_and_keep_one_adapter(sd_dir, tmp_path):  # noqa: F811
    finetuner = make_finetuner(sd_dir, tmp_path / "records", steps=2)  # 2 items: one step of one item per rank
    trainer = two_rank_trainer(max_epochs=1)
    trainer.fit(finetuner)
    assert trainer.world_size == 2 and trainer.state.finished
    r0, r1 = (load_records(tmp_path / "records", r) for r in (0, 1))
    assert len(r0) == len(r1) == 1
    r0, r1 = r0[0], r1[0]
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world_size"] == 2
    # different data on each rank: the sampler gives each its own step index (its own rollout seed)
    assert r0["indices"] == [0] and r1["indices"] == [1]
    assert max_diff(r0["before"], r1["before"]) == 0.0
    (g0,), (g1,) = r0["grads"], r1["grads"]
    assert len(g0) == len(finetuner.denoiser.lora_parameters()) > 0  # every adapter weight got a gradient
    assert max_diff(g0, g1) == 0.0, "the ranks stepped with different gradients: the adapter is not synchronised"
    assert max_diff(r0["after"], r1["after"]) == 0.0, "the ranks hold different adapters after the step"
    assert max_diff(r0["after"], r0["before"]) > 1e-4  # it trained

    # One process, the union of both ranks' data: the mean of the two items' losses (DDP averages).
    ref = make_finetuner(sd_dir, tmp_path / "unused", steps=2)
    ref.denoiser.load_checkpoint_state_dict(r0["before"])
    own = {}
    for index in (0, 1):
        ref._rng = random.Random(ref.seed)  # each rank's first step draws the first truncation
        ref.zero_grad()
        ref.training_step(torch.tensor(index), 0).backward()
        own[index] = lora_grads(ref)
    mean = {k: (own[0][k] + own[1][k]) / 2 for k in own[0]}
    assert max_diff(own[0], own[1]) > 1e-3 * max(float(v.abs().max()) for v in mean.values())  # the data differed
    scale = max(float(v.abs().max()) for v in mean.values())
    assert max_diff(g0, mean) <= 1e-4 * scale + 1e-7, "DDP's gradient is not the mean of the ranks' gradients"
    # The step itself: the same optimiser on the gradient the ranks stepped with. Not on ``mean``:
    # Adam's first step is about lr * sign(grad), so where a gradient is near zero a 1e-7 difference
    # in summation order (it changes with the thread count) moves a weight by up to lr.
    optimizer = ref.configure_optimizers()
    for name, p in ref.denoiser.unet.named_parameters():
        if name in g0:
            p.grad = g0[name].clone()
    optimizer.step()
    assert max_diff(adapter(ref), r0["after"]) < 1e-6


# ------------------------------------------------------------------ a whole run, every rank a copy of the script
@pytest.mark.slow  # ~50 s on 2 CPU cores: two ranks each import the stack and fit two rounds
def test_whole_image_run_under_ddp_keeps_ranks_in_sync_and_rank_zero_alone_writes(sd_dir, tmp_path):  # noqa: F811
    from conftest import seiko_env

    from safetensors.torch import load_file

    from seiko.ledger import Ledger

    records, log, run_dir = tmp_path / "records", tmp_path / "oracle.log", tmp_path / "run"
    overrides = tiny_image(sd_dir, "strategy=ucb", "logger=none")
    oracle = next(o for o in overrides if o.startswith("+domain.problem.oracle="))
    wrapped = ("+domain.problem.oracle={_target_:test_image_ddp.RankLoggingOracle,log:'" + str(log) + "',oracle:"
               + oracle.split("=", 1)[1] + "}")
    overrides = [wrapped if o == oracle else o for o in overrides]
    result = subprocess.run(
        [sys.executable, "-m", "seiko", *overrides, "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.strategy.start_method=popen", "finetune.module._target_=test_image_ddp.RecordingBackprop",
         f"+finetune.module.record_dir={records}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=seiko_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran the script too

    # only rank 0 asked the oracle: 12 labels bought once each, plus 4 evaluation images a round
    # (eval.num_samples, labelled outside the ledger); only it wrote the ledger and checkpoints
    calls = [line.split() for line in log.read_text().splitlines()]
    assert {rank for rank, _ in calls} == {"0"} and sum(int(n) for _, n in calls) == 12 + 2 * 4
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert ledger.num_labelled() == 12 and ledger.completed_rounds() == [0, 1]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.safetensors")) == \
        ["round_0.safetensors", "round_1.safetensors"]
    assert not list(run_dir.rglob("*rank_1*")) and not list(run_dir.rglob("*rank1*"))

    # both rounds' fine-tuning: both ranks in one 2-process fit, on different step indices,
    # stepping with the same (averaged) gradients and ending with the same adapter
    r0, r1 = load_records(records, 0), load_records(records, 1)
    assert len(r0) == len(r1) == 2
    for round, (a, b) in enumerate(zip(r0, r1)):
        assert a["world_size"] == b["world_size"] == 2 and (a["pid_rank"], b["pid_rank"]) == (0, 1)
        assert a["indices"] == [0] and b["indices"] == [1]
        assert max_diff(a["before"], b["before"]) == 0.0
        assert max_diff(a["grads"][0], b["grads"][0]) == 0.0
        assert max_diff(a["after"], b["after"]) == 0.0, f"round {round}: the ranks' adapters differ"
        assert max_diff(a["after"], a["before"]) > 1e-5, f"round {round}: nothing trained"
        saved = load_file(run_dir / "checkpoints" / f"round_{round}.safetensors")
        assert max_diff({k: saved[k] for k in a["after"]}, a["after"]) == 0.0  # rank 0 saved what both hold
    assert max_diff(r0[1]["before"], r0[0]["after"]) == 0.0  # round 1 starts from round 0's adapter
