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

import hashlib
import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASKED_LOGIT = -1e4  # exp(-1e4) == 0 in float32; finite, so log-probs and KLs stay finite

# Reference log-probs of the last (state, time) seen, one entry per reference's weights. In a
# fine-tuning step the policy and both KL references (pretrained, previous round) are all
# constrained by the same pretrained weights and called on the same state: the memo makes that
# one reference forward instead of three. The entry keeps its state and time alive, so their
# storage cannot be reused by another tensor while the entry stands.
_MEMO: dict[str, tuple[tuple, tuple, Tensor]] = {}


def fingerprint(module: nn.Module) -> str:
    """A digest of a module's layout, weights and buffers: equal digests mean the same function."""
    digest = hashlib.sha1(repr(module).encode())
    for name, value in itertools.chain(module.named_parameters(), module.named_buffers()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _key(t: Tensor) -> tuple:
    """Storage, view and contents version: equal keys while ``t`` is alive mean the same values.

    The tensor itself is part of the key so that its storage stays allocated; its version
    counter (shared with detached views, bumped by every in-place write) is read now.
    """
    return (t.detach(), t.device, t.data_ptr(), t.shape, t.stride(), t.dtype, t._version)


def _same(key: tuple, t: Tensor) -> bool:
    return key[1:] == _key(t)[1:]


class SupportConstrained(nn.Module):
    """``policy``'s logits, with the tokens ``reference`` gives probability < ``eps`` masked out.

    Both are denoisers with the same inputs and vocabulary; ``reference`` is frozen (it gets no
    gradient and no optimiser step). The module saves and loads as one state dict, so a round's
    checkpoint rebuilds the constrained policy on its own. A frozen policy with the reference's
    own weights (the pretrained KL reference) reuses the reference's forward instead of a second one.
    """

    def __init__(self, policy: nn.Module, reference: nn.Module, eps: float):
        super().__init__()
        if not 0.0 < eps < 1.0:
            raise ValueError(f"support eps must be in (0, 1), got {eps}")
        self.policy, self.reference, self.eps = policy, reference, float(eps)
        self.reference.requires_grad_(False).eval()
        self._forget()

    def _forget(self) -> None:
        """Drop the cached digests: the weights are new or about to change."""
        self._reference_digest: str | None = None
        self._policy_is_reference: bool | None = None

    def _load_from_state_dict(self, *args, **kwargs):
        self._forget()  # a round's weights loaded into this module (or a parent) change both digests
        super()._load_from_state_dict(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()  # a frozen reference never drops out
        return self

    def reference_log_probs(self, state: Tensor, time: Tensor) -> Tensor:
        """log p_reference at (state, time), computed once per state across references with these weights."""
        if self._reference_digest is None:
            self._reference_digest = f"{fingerprint(self.reference)}/{state.device}"
        hit = _MEMO.get(self._reference_digest)
        if hit is not None and _same(hit[0], state) and _same(hit[1], time):
            return hit[2]
        with torch.no_grad():
            log_p = F.log_softmax(self.reference(state.detach(), time).float(), dim=-1)
        _MEMO[self._reference_digest] = (_key(state), _key(time), log_p)
        return log_p

    def outside(self, state: Tensor, time: Tensor) -> Tensor:
        """True where the reference's probability is below eps (never at its most likely token)."""
        log_p = self.reference_log_probs(state, time)
        return (log_p < math.log(self.eps)) & (log_p < log_p.amax(-1, keepdim=True))

    def _frozen_copy_of_reference(self) -> bool:
        if self.policy.training or any(p.requires_grad for p in self.policy.parameters()):
            return False  # a policy being trained changes every step (and may drop out): never cached
        if self._policy_is_reference is None:
            self._policy_is_reference = fingerprint(self.policy) == fingerprint(self.reference)
        return self._policy_is_reference

    def forward(self, state: Tensor, time: Tensor) -> Tensor:
        if self._frozen_copy_of_reference():
            # log-softmax differs from the logits by a per-position constant: the same distribution
            log_p = self.reference_log_probs(state, time)
            return log_p.masked_fill(self.outside(state, time), MASKED_LOGIT)
        logits = self.policy(state, time)
        return logits.masked_fill(self.outside(state, time), MASKED_LOGIT)
