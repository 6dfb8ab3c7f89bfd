"""Lightning DDP with 2 CPU processes (gloo, spawned workers) runs real fine-tuning steps."""
from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from helpers import two_rank_trainer

from seiko.api import compose, run
from seiko.diffusion import MaskedDiffusion, SequenceDenoiser
from seiko.domains import ProteinDomain
from seiko.finetune import BackpropFinetuner
from seiko.methods import RoundObjective
from seiko.reward import GPRewardModel
from seiko.strategies import UCB


def test_ddp_two_cpu_processes_run_one_backprop_finetuning_step():
    torch.manual_seed(0)
    domain = ProteinDomain(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3)
    family = MaskedDiffusion(8, 12)
    denoiser = SequenceDenoiser(8, 12, d_model=32, num_layers=1, num_heads=2)
    designs = domain.pretraining_data(32, torch.Generator().manual_seed(0))
    reward = GPRewardModel(seed=0)
    reward.set_data(torch.nn.functional.one_hot(designs, 8).float().flatten(1),
                    torch.as_tensor(domain.oracle(domain.decode(designs)), dtype=torch.float32))
    L.Trainer(accelerator="cpu", max_epochs=5, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(reward)
    before = copy.deepcopy(denoiser.state_dict())
    finetuner = BackpropFinetuner(denoiser, family, denoiser, denoiser, kl_pretrained=0.01, kl_previous=0.01,
                                  lr=1e-2, batch_size=4, steps=1, objective=RoundObjective(reward, UCB(bonus=1.0), 0, 1.0),
                                  features=domain.features)
    trainer = two_rank_trainer(max_steps=1)
    trainer.fit(finetuner)
    assert trainer.world_size == 2 and trainer.state.finished
    after = denoiser.state_dict()  # the spawn launcher returns rank 0's weights to this process
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved, "the DDP step did not update the policy"
    assert all(torch.isfinite(v).all() for v in after.values())


@pytest.mark.slow
def test_whole_loop_under_trainer_ddp(tiny, tmp_path):
    summary = run(compose(tiny + ["strategy=ucb", "trainer=ddp", "trainer.accelerator=cpu"]), tmp_path)
    assert summary["status"] == "finished" and summary["queries"] == 32


def test_every_rank_runs_the_loop_but_only_rank_zero_buys_labels(tiny, tmp_path):
    """DDP in popen mode starts each rank as a copy of the script (as FSDP, torchrun and SLURM do)."""
    import subprocess
    import sys

    from conftest import seiko_env
    from seiko.ledger import Ledger

    log = tmp_path / "oracle.log"
    result = subprocess.run(
        [sys.executable, "-m", "seiko", *tiny, "strategy=ucb", "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.strategy.start_method=popen", "oracle._target_=helpers.CountingOracle", f"+oracle.log={log}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=seiko_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "train_ddp_process_1.log").is_file()  # rank 1 ran the script too
    assert len(log.read_text().splitlines()) == 32  # 2 ranks, each label bought once
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        assert ledger.num_labelled() == 32 and ledger.completed_rounds() == [0, 1]
