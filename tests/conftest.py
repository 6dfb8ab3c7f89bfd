"""Shared test settings: a tiny Ehrlich domain whose denoiser pretrains in a second or two."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py for oracles by _target_

TINY = [
    "domain.num_states=8", "domain.dim=12", "domain.num_motifs=1", "domain.motif_length=3",
    "domain.quantization=3", "domain.pretrained=null", "domain.pretrain_steps=30",
    "domain.denoiser.d_model=32", "domain.denoiser.num_layers=1", "domain.denoiser.num_heads=2",
    "budget.per_round=[16,16]", "budget.oracle_batch_size=8", "finetune.steps=2", "finetune.batch_size=8",
    "reward.max_epochs=5", "eval.num_samples=16", "progress=false", "logger=none",
]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Two threads on two busy cores made tiny fits ~10x slower; tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    return list(TINY)


def seiko_env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    return env
