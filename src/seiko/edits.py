"""Acquisition-ranked single-token edits of a round's proposals (``edits.fraction``; not in the paper).

Why: fine-tuning moves a token's probability through its weight in the relaxed sample, so a
token the policy draws once in thousands (the last element of a motif whose link the pretrained
model finds rare) is almost never proposed, however much the reward model would like it. Samples
are cheap and labels are not: for each proposal, every single-token substitution the pretrained
model allows in context (conditional probability >= eps, the same floor as the support
constraint) is scored with the round's acquisition, and the proposal is replaced by its best
edit when that scores higher. The oracle then labels the edited designs.

With ``edits.restarts`` (a share of the round) proposals start instead from the ledger's best
labelled designs, each replaced by its best-scoring edit that no label has yet: a trust region
around what the oracle already rated highest, where fresh samples of a policy that has learnt
only part of that are a long way off. ``edits.per_restart`` edits of each such design go to
the oracle, so the share is spent on the few best designs rather than one edit of many: of a
design's few hundred allowed edits only the few that add a missing motif element improve it.

With ``edits.blocks`` = W >= 2 a restart may also move a block of 2 to W tokens: copy it over
another place, or overwrite it with a run of one token (``block_edits``). Why: on a product of
motif terms a design soon sits where no single substitution helps, because two partial motifs
share positions and completing one breaks the other; the way out is to move one of them, which
takes several tokens at once. On the 4-motif benchmark, climbs that ask the oracle itself reach
1.0 from 4 of 12 starting designs with block moves and from none of the same 12 with single
tokens (docs/protein-benchmark.md, 'Block moves'). A block edit must put only tokens the pretrained model allows
where they land (``supported``), the rule single edits follow.

With ``edits.focus`` = F > 1 each round in a row in which the best label did not rise multiplies
``edits.per_restart`` by F, so the restart share closes in on the few best designs. Why: near the
optimum the reward model ranks the one missing move well but not first. On the 4-motif
benchmark, from seed 0's 0.750 design the sparse pair model ranks the seven moves to 1.0 at 16,
36, 37, ... of 7,553 supported ones; 16 edits of each of 8 designs label none of them, 125
edits of that one design would (docs/protein-benchmark.md, 'Focus').

With ``edits.steps`` > 1 the edit is repeated on its result (a greedy climb of at most that many
tokens), because one token per round is slow where the optimum lies several tokens away: on a
product of motif terms every missing element is one more step.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

CHECK_BATCH = 64  # edits checked against the reference at a time, best first


@torch.no_grad()
def conditionals(reference: nn.Module, family, designs: Tensor, positions: Tensor, chunk: int = 4096) -> Tensor:
    """[N, V]: the reference's distribution at ``positions[n]`` of ``designs[n]``, with that
    position alone masked, so its conditional there uses both neighbours; one masked position
    is the last step of the reverse chain."""
    variants = designs.clone()
    variants[torch.arange(len(designs), device=designs.device), positions] = family.mask_id
    probs = []
    for start in range(0, len(variants), chunk):
        part = variants[start:start + chunk]
        logits = reference(part, family.model_time(family.num_steps - 1, len(part), designs.device))
        probs.append(logits[torch.arange(len(part)), positions[start:start + chunk]].softmax(-1))
    return torch.cat(probs)


@torch.no_grad()
def allowed_substitutions(reference: nn.Module, family, tokens: Tensor, eps: float, chunk: int = 4096) -> Tensor:
    """Bool [B, L, V]: token v may replace position l of design b (reference prob >= eps, v new),
    by the reference's ``conditionals`` at each position."""
    batch, length = tokens.shape
    positions = torch.arange(length, device=tokens.device).repeat(batch)
    probs = conditionals(reference, family, tokens.repeat_interleave(length, 0), positions, chunk)
    allowed = probs.reshape(batch, length, -1) >= eps
    return allowed & (torch.nn.functional.one_hot(tokens, allowed.shape[-1]) == 0)


def single_edits(design: Tensor, allowed: Tensor) -> Tensor:
    """[E, L]: the design with one allowed substitution each (``allowed`` [L, V])."""
    pos, tok = allowed.nonzero(as_tuple=True)
    cands = design.repeat(len(pos), 1)
    cands[torch.arange(len(pos)), pos] = tok
    return cands


def scores(cands: Tensor, score: Callable[[Tensor], Tensor], chunk: int) -> Tensor:
    return torch.cat([score(cands[s:s + chunk]) for s in range(0, len(cands), chunk)])


@torch.no_grad()
def best_edits(tokens: Tensor, allowed: Tensor, score: Callable[[Tensor], Tensor], chunk: int = 4096) -> Tensor:
    """Each design replaced by its best-scoring allowed single-token edit, if that beats it."""
    out = tokens.clone()
    base = score(tokens)
    for b in range(tokens.shape[0]):
        cands = single_edits(tokens[b], allowed[b])
        if len(cands) == 0:
            continue
        values = scores(cands, score, chunk)
        best = int(values.argmax())
        if values[best] > base[b]:
            out[b] = cands[best]
    return out


@torch.no_grad()
def climb(tokens: Tensor, reference: nn.Module, family, eps: float, score: Callable[[Tensor], Tensor],
          steps: int) -> Tensor:
    """Up to ``steps`` best single-token edits in turn; a design stops when no edit beats it.

    The allowed tokens are recomputed after every step, since they depend on the neighbours.
    """
    out, active = tokens.clone(), torch.ones(len(tokens), dtype=torch.bool)
    for _ in range(steps):
        idx = active.nonzero(as_tuple=True)[0]
        if len(idx) == 0:
            break
        current = out[idx]
        edited = best_edits(current, allowed_substitutions(reference, family, current, eps), score)
        changed = (edited != current).any(-1)
        out[idx] = edited
        active[idx[~changed]] = False
    return out


def block_edits(design: Tensor, width: int, vocab_size: int) -> Tensor:
    """[E, L]: the distinct designs one block move makes of ``design``, unchecked: for every block
    of 1 to ``width`` tokens, a run of one token over it, and for blocks of 2 or more, a copy of
    it over any other place (overlapping ones too, which shift it by a few positions). Width 1
    runs are the single substitutions, so these include every single edit.
    """
    length = design.shape[-1]
    if not 1 <= width <= length:
        raise ValueError(f"block width must be between 1 and the length {length}, got {width}")
    out = []
    for w in range(1, width + 1):
        starts, offsets = torch.arange(length - w + 1), torch.arange(w)
        at, token = (g.flatten() for g in torch.meshgrid(starts, torch.arange(vocab_size), indexing="ij"))
        runs = design.repeat(len(at), 1)
        runs.scatter_(1, at[:, None] + offsets, token[:, None].expand(-1, w).to(design.dtype))
        out.append(runs)
        if w > 1:
            src, dst = (g.flatten() for g in torch.meshgrid(starts, starts, indexing="ij"))
            src, dst = src[src != dst], dst[src != dst]
            copies = design.repeat(len(src), 1)
            copies.scatter_(1, dst[:, None] + offsets, design[src[:, None] + offsets])
            out.append(copies)
    cands = torch.unique(torch.cat(out), dim=0)
    return cands[(cands != design).any(-1)]


@torch.no_grad()
def supported(reference: nn.Module, family, design: Tensor, cands: Tensor, eps: float, chunk: int = 4096) -> Tensor:
    """Bool [E]: every token that edit e of ``design`` changes has reference probability >= eps
    at its place, with that place alone masked in the edited design: the rule
    ``allowed_substitutions`` applies to one token, applied to each token of a block.
    """
    edit, pos = (cands != design).nonzero(as_tuple=True)
    bad = torch.zeros(len(cands), dtype=torch.bool, device=cands.device)
    if len(edit):
        probs = conditionals(reference, family, cands[edit], pos, chunk)
        bad[edit[probs[torch.arange(len(edit)), cands[edit, pos]] < eps]] = True
    return ~bad


@torch.no_grad()
def best_new_edits(tokens: Tensor, candidates: Sequence[Tensor], score: Callable[[Tensor], Tensor],
                   taken: set[bytes], per: int = 1, limit: int | None = None,
                   check: Callable[[int, Tensor], Tensor] | None = None, chunk: int = 4096) -> Tensor:
    """[N, L]: up to ``per`` best-scoring edits of each design (``candidates[b]``, [E, L]), in the
    designs' order, none in ``taken`` (which it extends), at most ``limit`` in all.

    ``check(b, edits)`` -> bool [E], if given, is asked lazily in score order (it runs the
    reference model, and only the first few edits of thousands are kept). Unlike ``best_edits``
    an edit is kept even when it scores below its design: the design is already labelled, so
    the point is the best labels not yet bought. A design with no new edit gives none.
    """
    out: list[Tensor] = []
    limit = len(tokens) * per if limit is None else limit
    for b in range(tokens.shape[0]):
        want, cands = min(per, limit - len(out)), candidates[b]
        if want <= 0:
            break
        if len(cands) == 0:
            continue
        ranked = scores(cands, score, chunk).argsort(descending=True)
        ranked = ranked[torch.as_tensor([cands[i].numpy().tobytes() not in taken for i in ranked.tolist()])]
        kept: list[int] = []
        for start in range(0, len(ranked), CHECK_BATCH):
            part = ranked[start:start + CHECK_BATCH]
            if check is not None:
                part = part[check(b, cands[part])]
            kept += part.tolist()[:want - len(kept)]
            if len(kept) == want:
                break
        for i in kept:
            taken.add(cands[i].numpy().tobytes())
            out.append(cands[i])
    return torch.stack(out) if out else tokens[:0]
