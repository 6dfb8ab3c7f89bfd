"""Fine-tuning by PPO on the per-step log-likelihoods of the chain (DDPO-style).

For rewards that cannot be differentiated, and for the online-PPO baseline, which feeds the
true labels of its own samples straight into PPO with no reward model. The KL terms are the
exact per-step KLs at the visited states, added to the loss with their gradient (as DPOK).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from seiko.diffusion.sampler import Trajectory, sample, trajectory_log_probs
from seiko.finetune.base import Finetuner


class PPOFinetuner(Finetuner):
    """Each training step: one batch of trajectories, then ``ppo_epochs`` clipped updates on it.

    ``reward`` maps final designs (hard tokens or vectors) to rewards [B]; or, as for the
    backprop fine-tuner, ``objective`` on ``features`` of one-hot designs (SEIKO's optimistic
    reward). Alternatively ``rollouts`` fixes the trajectories and ``rewards`` their labels
    (online PPO).
    """

    def __init__(self, *args, reward: Callable[[Tensor], Tensor] | None = None,
                 objective: Callable[[Tensor], Tensor] | None = None, features: Callable[[Tensor], Tensor] | None = None,
                 rollouts: list[Trajectory] | None = None, rewards: list[Tensor] | None = None,
                 ppo_epochs: int = 4, clip: float = 0.2, max_grad_norm: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if objective is not None:
            if reward is not None or features is None:
                raise ValueError("PPOFinetuner takes either reward, or objective with features")
            self.objective, self.features = objective, features
            reward = self._objective_reward
        if (reward is None) == (rollouts is None):
            raise ValueError("PPOFinetuner needs either a reward function or fixed rollouts with rewards")
        self.reward, self.rollouts, self.rewards = reward, rollouts, rewards
        if rollouts is not None:
            self.steps = len(rollouts)
        self.ppo_epochs, self.clip, self.max_grad_norm = ppo_epochs, clip, max_grad_norm
        self.automatic_optimization = False

    def _objective_reward(self, final: Tensor) -> Tensor:
        design = torch.nn.functional.one_hot(final, self.family.vocab_size).float() if not final.is_floating_point() else final
        return self.score(design)

    def _batch(self, index: int) -> tuple[Trajectory, Tensor]:
        if self.rollouts is not None:
            return self.rollouts[index].to(self.device), self.rewards[index].to(self.device)
        self.denoiser.eval()
        traj = sample(self.denoiser, self.family, self.batch_size, self.generator(index), trajectory=True,
                      device=self.device, purpose="train")
        self.denoiser.train()
        with torch.no_grad():
            return traj, self.reward(traj.final)

    def training_step(self, index, batch_idx):
        opt = self.optimizers()
        traj, reward = self._batch(int(index))
        finite = torch.isfinite(reward)
        advantage = torch.zeros_like(reward)
        if finite.sum() > 1:
            r = reward[finite]
            advantage[finite] = (r - r.mean()) / (r.std() + 1e-8)
        old = traj.log_probs.detach()
        for _ in range(self.ppo_epochs):
            new, kl = trajectory_log_probs(self.denoiser, self.family, traj, self.refs)
            ratio = torch.exp(new - old)  # [T, B]
            unclipped = ratio * advantage
            clipped = ratio.clamp(1 - self.clip, 1 + self.clip) * advantage
            policy_loss = -torch.minimum(unclipped, clipped).mean()
            kl_seq = {k: v.sum(0) for k, v in kl.items()}
            loss = policy_loss + self.kl_penalty(kl_seq)
            opt.zero_grad()
            self.manual_backward(loss)
            self.clip_norm(opt, self.max_grad_norm)
            opt.step()
        self.log("finetune/reward", reward[finite].mean() if finite.any() else torch.tensor(float("nan")),
                 prog_bar=True)
        self.log("finetune/loss", loss.detach())
        self.log("finetune/clip_fraction", ((ratio - 1).abs() > self.clip).float().mean())
        self.log_kl(kl_seq)
