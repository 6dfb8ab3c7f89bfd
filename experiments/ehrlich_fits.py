"""Shared by the reward-model benchmarks (compute.py, reward_models.py): labelled Ehrlich data,
and a reward config fitted exactly as the feedback loop fits it."""
from __future__ import annotations

import time


def chain_labels(num: int, seed: int, motifs: int = 2):
    """``num`` feasible sequences from the Ehrlich chain (32 states, length 32, function seed 0)
    as flat one-hots x [num, 1024], with their labels y [num] (infeasible ones as 0)."""
    import torch
    import torch.nn.functional as F

    from seiko.domains import ProteinDomain

    domain = ProteinDomain(num_states=32, dim=32, num_motifs=motifs, motif_length=4, quantization=4, seed=0)
    tokens = domain.pretraining_data(num, torch.Generator().manual_seed(seed))
    values = torch.as_tensor(domain.oracle(domain.decode(tokens)), dtype=torch.float32)
    return F.one_hot(tokens, domain.vocab_size).float().flatten(1), torch.nan_to_num(values, neginf=0.0)


def fit_reward_config(cfg, x, y):
    """Build ``cfg.reward.model``, set its data and fit it for ``cfg.reward.max_epochs`` with a bare
    Lightning Trainer; returns the model and the fit's wall seconds."""
    from hydra.utils import instantiate

    model = instantiate(cfg.reward.model)
    start = time.perf_counter()
    model.fit_labels(x, y, cfg.reward.max_epochs)
    return model, time.perf_counter() - start
