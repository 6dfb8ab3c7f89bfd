"""Masked (absorbing-state) diffusion on token sequences.

The reverse chain starts from an all-mask sequence and unmasks a fixed number of positions per
step, chosen uniformly at random among the masked ones; with one position per step it is an
exact any-order autoregressive sampler, so a denoiser equal to the true conditionals yields
exactly the data distribution (this is what the feasibility test checks). design.md measured
this family learning a Markov chain about ten times better than Gaussian noise on one-hots.

``order="left_to_right"`` unmasks the leftmost masked positions instead: with one position per
step the chain is an autoregressive sampler, for representations read left to right (a SELFIES
ring or branch token counts atoms back from where it stands, so a token drawn before the atoms
it counts is a guess). ``suffix_share`` of the training batches then mask a suffix rather than a
random subset: the states that order visits. Fills (``infill``) keep a random order either way.

``causal=True`` (with a causal denoiser, ``SequenceDenoiser(causal=True)``, and only with
``order="left_to_right"``) is the autoregressive special case trained as such: the loss is the
teacher-forced cross-entropy of every position given the ones before it, which is the
left-to-right bound with every prefix at once, and fills run left to right, each conditioned on
what lies before it (a causal denoiser cannot read the right context).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seiko.diffusion.base import NoiseFamily
from seiko.diffusion.steps import CategoricalStep


class MaskedDiffusion(NoiseFamily):
    ORDERS = ("random", "left_to_right")

    def __init__(self, vocab_size: int, length: int, num_steps: int | None = None, order: str = "random",
                 suffix_share: float = 0.0, causal: bool = False):
        num_steps = length if num_steps is None else num_steps
        if not 1 <= num_steps <= length:
            raise ValueError(f"num_steps must be in [1, length={length}], got {num_steps}")
        if order not in self.ORDERS:
            raise ValueError(f"domain.family.order must be one of {', '.join(self.ORDERS)}, got {order!r}")
        if not 0.0 <= suffix_share <= 1.0:
            raise ValueError(f"domain.family.suffix_share must be in [0, 1], got {suffix_share!r}")
        self.vocab_size, self.length, self.num_steps = vocab_size, length, num_steps
        if causal and order != "left_to_right":
            raise ValueError(f"domain.family.causal needs order='left_to_right', got {order!r}")
        self.order, self.suffix_share, self.causal = order, float(suffix_share), bool(causal)
        self.mask_id = vocab_size
        base, extra = divmod(length, num_steps)
        self.unmask_counts = [base + (1 if i < extra else 0) for i in range(num_steps)]

    def prior(self, batch, generator=None, device=None):
        return torch.full((batch, self.length), self.mask_id, dtype=torch.long, device=device)

    def is_masked(self, state: Tensor) -> Tensor:
        return state[..., -1] > 0.5 if state.is_floating_point() else state == self.mask_id

    @staticmethod
    def _left_first(masked: Tensor) -> Tensor:
        """Scores that rank the masked positions left to right, ahead of every unmasked one."""
        scores = -torch.arange(masked.shape[-1], device=masked.device, dtype=torch.float).expand(masked.shape)
        return scores.masked_fill(~masked, -float(masked.shape[-1]) - 1.0)

    def selection(self, state, step, generator=None):
        masked = self.is_masked(state)
        if self.order == "left_to_right":  # the leftmost masked positions first
            scores = self._left_first(masked)
        else:
            scores = torch.rand(masked.shape, generator=generator, device=masked.device)
            scores = scores.masked_fill(~masked, -1.0)
        index = scores.topk(self.unmask_counts[step], dim=-1).indices
        return torch.zeros_like(masked).scatter_(-1, index, True)

    def entry_step(self, tokens: Tensor) -> int:
        """The step of the reverse chain at which exactly the masked positions of ``tokens`` are
        still masked (every row must mask as many): where a fill of them enters the chain."""
        counts = (tokens == self.mask_id).sum(-1)
        k = int(counts[0]) if len(counts) else 0
        if len(counts) == 0 or not (counts == k).all() or k < 1:
            raise ValueError(f"a fill needs the same number (>= 1) of masked positions in every row, got {counts.tolist()}")
        left = 0
        for step in range(self.num_steps - 1, -1, -1):
            left += self.unmask_counts[step]
            if left == k:
                return step
        raise ValueError(f"no step of this chain ({self.num_steps} steps over {self.length} positions) leaves "
                         f"exactly {k} positions masked")

    def model_time(self, step, batch, device=None):
        # The number of masks already tells the denoiser the time; it is passed for symmetry.
        return torch.full((batch,), self.num_steps - step, dtype=torch.long, device=device)

    def transition(self, output, state, step, selection):
        return CategoricalStep(logits=output, update=selection)

    def advance(self, dist, state, generator=None, context=None):
        return dist.sample(state, generator)

    def advance_relaxed(self, dist, state, tau, generator=None):
        return dist.rsample(state, tau=tau, hard=True, generator=generator)

    def relax(self, state):
        return F.one_hot(state, self.vocab_size + 1).float()

    def to_tokens(self, state: Tensor) -> Tensor:
        return state[..., : self.vocab_size].argmax(-1) if state.is_floating_point() else state

    def trajectory_of(self, tokens: Tensor, generator=None, model: nn.Module | None = None, device=None):
        """A reverse-chain path ending in ``tokens`` (a ``Trajectory``, log-probs under ``model``).

        The order of unmasking is independent of the model, so a fresh random order (the
        family's order) is a trajectory the sampler could have taken: PPO can score designs
        reloaded from the ledger.
        """
        if model is None:
            raise ValueError("trajectory_of scores the path's steps under the sampling policy: pass model=")
        tokens = tokens.to(device) if device is not None else tokens
        state = self.prior(tokens.shape[0], device=tokens.device)
        states, selections = [state], []
        for step in range(self.num_steps):
            sel = self.selection(state, step, generator)
            state = torch.where(sel, tokens, state)
            states.append(state)
            selections.append(sel)
        from seiko.diffusion.sampler import Trajectory, trajectory_log_probs

        traj = Trajectory(states, selections, torch.zeros(self.num_steps, len(tokens)))
        with torch.no_grad():
            traj.log_probs = trajectory_log_probs(model, self, traj)[0]
        return traj

    @torch.no_grad()
    def infill(self, model: nn.Module, tokens: Tensor, masks: Tensor, generator=None, chunk: int = 4096) -> Tensor:
        """``tokens`` [B, L] with the positions in ``masks`` [B, L] re-drawn by ``model``.

        The masked positions are unmasked one at a time in a random order, each drawn from the
        model's conditional given everything unmasked so far: the last steps of the any-order
        reverse chain, entered at the state where exactly those positions are masked. With the
        true conditionals as the model the fills are exact draws from the data's conditional, so
        a design on the feasible set stays on it; the other positions never change.
        """
        out = []
        for start in range(0, len(tokens), chunk):
            state = tokens[start:start + chunk].masked_fill(masks[start:start + chunk], self.mask_id)
            for left in range(int(masks[start:start + chunk].sum(-1).max()), 0, -1):
                masked = state == self.mask_id
                if self.causal:  # the leftmost masked position: its prefix is clean
                    pick = self._left_first(masked)
                else:
                    pick = torch.rand(masked.shape, generator=generator, device=state.device).masked_fill(~masked, -1.0)
                update = torch.zeros_like(masked).scatter_(-1, pick.argmax(-1, keepdim=True), True) & masked
                # the time of the chain's step with ``left`` masks to go (masked denoisers read it from the masks)
                time = self.model_time(max(self.num_steps - left, 0), len(state), state.device)
                state = CategoricalStep(logits=model(state, time), update=update).sample(state, generator)
            out.append(state)
        return torch.cat(out) if out else tokens.clone()

    def loss(self, model: nn.Module, x0: Tensor, generator=None) -> Tensor:
        """Any-order autoregressive bound: mask k ~ U{1..L} positions, weight the CE by L/k.

        Returned per position (nats), so a perfect model reaches the data's entropy rate.
        """
        batch, length = x0.shape
        if self.causal:  # teacher forcing: a causal denoiser's output at j reads x0 before j only
            logits = model(x0, self.model_time(0, batch, x0.device))
            return F.cross_entropy(logits.transpose(1, 2), x0)
        k = torch.randint(1, length + 1, (batch, 1), generator=generator, device=x0.device)
        ranks = torch.rand(x0.shape, generator=generator, device=x0.device).argsort(-1).argsort(-1)
        if self.suffix_share > 0:  # these rows rank positions right to left: their last k are masked
            suffix = torch.rand((batch, 1), generator=generator, device=x0.device) < self.suffix_share
            right_first = torch.arange(length - 1, -1, -1, device=x0.device).expand(batch, length)
            ranks = torch.where(suffix, right_first, ranks)
        masked = ranks < k
        noisy = x0.masked_fill(masked, self.mask_id)
        logits = model(noisy, self.model_time(0, batch, x0.device))
        ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
        per_seq = (ce * masked).sum(-1) * (length / k.squeeze(-1).float())
        return per_seq.mean() / length
