"""Proposals made by the round's fine-tuned policy itself (``edits.moves=infill``; not in the paper).

Why: the enumerated moves of ``seiko.edits`` rank every single-token or block change of a design
with the reward model, so the local search, not the fine-tuned model, finds the designs; and they
cannot scale (a length-256 sequence over 32 states has 7,936 single-token moves and far more
block moves, each checked against the pretrained model). Masked diffusion has a natural move of
its own: re-mask some positions of a labelled design and let the round's policy fill them in
(inpainting, as LaMBO-2's guided infilling and GenMol's remasking do). The fine-tuned policy is
then the mutation operator: its fills carry what fine-tuning learnt about where reward lies, and
under the support constraint every fill stays where the pretrained model puts mass. The reward
model only ranks a few dozen fills per design, at a cost that grows with the number of masked
positions, not with the length or the vocabulary.

A re-masking is ``k`` positions, k uniform on 1..``masked``: with probability ``span`` one
contiguous span of k positions (a motif's neighbourhood, a fragment), otherwise k positions
anywhere (the spaced elements of a motif).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from seiko.edits import scores


def remask(num: int, length: int, masked: int, span: float, generator: torch.Generator | None = None,
           exact: bool = False) -> Tensor:
    """Bool [num, length]: ``num`` random re-maskings of 1..``masked`` positions each (``exact``:
    ``masked`` positions each, as a batch of fills that must enter the chain at one step needs)."""
    if not 1 <= masked <= length:
        raise ValueError(f"edits.masked must be between 1 and the design length {length}, got {masked}")
    k = torch.full((num, 1), masked) if exact else torch.randint(1, masked + 1, (num, 1), generator=generator)
    ranks = torch.rand(num, length, generator=generator).argsort(-1).argsort(-1)
    scattered = ranks < k
    start = (torch.rand(num, 1, generator=generator) * (length - k + 1)).long()
    offset = torch.arange(length).unsqueeze(0) - start
    spans = (offset >= 0) & (offset < k)
    return torch.where(torch.rand(num, 1, generator=generator) < span, spans, scattered)


class InfillMoves:
    """New designs near labelled ones: fills of each, drawn from a policy, ``candidates`` for
    every one that the acquisition keeps.

    ``__call__`` gives, per start design, its distinct fills that differ from it (the moves the
    restarts rank), the counterpart of ``seiko.edits.block_edits`` and ``single_edits``. Drawing
    a fixed number of fills per kept one keeps the ranking equally selective when ``edits.focus``
    spends many restarts on one design: the acquisition picks 1 in ``candidates`` either way.
    """

    def __init__(self, candidates: int = 8, masked: int = 4, span: float = 0.5):
        if candidates < 1:
            raise ValueError(f"edits.candidates must be >= 1, got {candidates}")
        if masked < 1:
            raise ValueError(f"edits.masked must be >= 1, got {masked}")
        if not 0.0 <= span <= 1.0:
            raise ValueError(f"edits.span must be in [0, 1], got {span}")
        self.candidates, self.masked, self.span = int(candidates), int(masked), float(span)

    @torch.no_grad()
    def fills(self, policy: nn.Module, family, starts: Tensor, per: int,
              generator: torch.Generator | None = None) -> Tensor:
        """[S, per, L]: ``per`` fills of each start design (duplicates and unchanged ones included)."""
        num, length = starts.shape
        masks = remask(num * per, length, min(self.masked, length), self.span, generator)
        tokens = starts.repeat_interleave(per, 0)
        return family.infill(policy, tokens, masks.to(tokens.device), generator).view(num, per, length)

    def __call__(self, policy: nn.Module, family, starts: Tensor, generator: torch.Generator | None = None,
                 keep: int = 1) -> list[Tensor]:
        """Distinct new fills of each start: ``candidates * keep`` drawn, for ``keep`` to be kept."""
        out = []
        for start, fills in zip(starts, self.fills(policy, family, starts, self.candidates * keep, generator)):
            fills = torch.unique(fills, dim=0)
            out.append(fills[(fills != start).any(-1)])
        return out

    @torch.no_grad()
    def improve(self, policy: nn.Module, family, designs: Tensor, score: Callable[[Tensor], Tensor],
                generator: torch.Generator | None = None) -> Tensor:
        """Each design replaced by its best-scoring fill when that beats it (``edits.fraction``)."""
        if len(designs) == 0:
            return designs
        fills = self.fills(policy, family, designs, self.candidates, generator)
        num, cands, length = fills.shape
        values = scores(fills.reshape(-1, length), score, chunk=4096).view(num, cands)
        best = values.argmax(-1)
        better = values[torch.arange(num), best] > score(designs)
        return torch.where(better.unsqueeze(-1), fills[torch.arange(num), best], designs)
