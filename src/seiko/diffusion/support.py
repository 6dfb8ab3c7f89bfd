"""Keep a fine-tuned categorical policy inside the pretrained model's support.

Why: the KL penalty to the pretrained model prices every token, but a token the pretrained
model all but rules out (an impossible residue pair, a forbidden transition) costs only
q * log(q / p_pre) nats, which a weak KL weight lets the reward outbid: in the Ehrlich
benchmark 95% of the broken transitions in fine-tuned samples sit next to a motif token the
fine-tuning pushed in. Masking, at every step, the tokens to which the pretrained model gives
probability below ``eps`` makes that region unreachable whatever the weight, and leaves the
KL to price what the pretrained model does consider possible. The pretrained model's own
most likely token is never masked, so every step has at least one choice.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASKED_LOGIT = -1e4  # exp(-1e4) == 0 in float32; finite, so log-probs and KLs stay finite


class SupportConstrained(nn.Module):
    """``policy``'s logits, with the tokens ``reference`` gives probability < ``eps`` masked out.

    Both are denoisers with the same inputs and vocabulary; ``reference`` is frozen (it gets no
    gradient and no optimiser step). The module saves and loads as one state dict, so a round's
    checkpoint rebuilds the constrained policy on its own.
    """

    def __init__(self, policy: nn.Module, reference: nn.Module, eps: float):
        super().__init__()
        if not 0.0 < eps < 1.0:
            raise ValueError(f"support eps must be in (0, 1), got {eps}")
        self.policy, self.reference, self.eps = policy, reference, float(eps)
        self.reference.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()  # a frozen reference never drops out
        return self

    def outside(self, state: Tensor, time: Tensor) -> Tensor:
        """True where the reference's probability is below eps (never at its most likely token)."""
        with torch.no_grad():
            log_p = F.log_softmax(self.reference(state.detach(), time).float(), dim=-1)
            return (log_p < math.log(self.eps)) & (log_p < log_p.amax(-1, keepdim=True))

    def forward(self, state: Tensor, time: Tensor) -> Tensor:
        logits = self.policy(state, time)
        return logits.masked_fill(self.outside(state, time), MASKED_LOGIT)
