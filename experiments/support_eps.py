"""Which tokens a support constraint of a given eps masks, on the committed pretrained model.

Why: ``finetune.support_eps`` masks, at every step, tokens the pretrained model gives less than
eps. It is meant to cut the forbidden transitions of the Ehrlich chain (probability 0), but
the chain's allowed transitions are far from uniform: most have probability below 0.01, and
an optimum may need one of them. This measures, for the model behind every protein run, the
model's probability of each next token given one known token (the rest masked, which is the
chain's transition probability T[a, b] for an exact model), and reports per eps the share of
forbidden and of allowed transitions it masks, and whether it cuts every path between two
consecutive elements of a motif of the benchmark's functions (a motif element at offset s
after another needs s unmasked transitions from one to the other): a cut motif can never be
completed, so the optimum 1.0 cannot be sampled.

    python experiments/support_eps.py            # -> experiments/results/support_eps.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

EPS = [1e-2, 3e-3, 1e-3, 3e-4, 1e-4]


def next_token_probs(denoiser, family, vocab: int, length: int) -> torch.Tensor:
    """p(x_{i+1} = b | x_i = a, all else masked) averaged over positions i: [a, b]."""
    probs = []
    with torch.no_grad():
        for pos in range(length - 1):
            x = torch.full((vocab, length), family.mask_id)
            x[:, pos] = torch.arange(vocab)
            logits = denoiser(x, family.model_time(0, vocab)).float()
            probs.append(torch.softmax(logits, -1)[:, pos + 1, :vocab])
    return torch.stack(probs).mean(0)


def needed_links(function) -> list[tuple[int, int, int]]:
    """Consecutive motif elements and their offset: (a, b, gap) for every motif."""
    return [(int(motif[i]), int(motif[i + 1]), gap) for motif, spacing in zip(function.motifs, function.spacings)
            for i, gap in enumerate(spacing.tolist())]


def best_path(probs: torch.Tensor, a: int, b: int, gap: int) -> float:
    """Highest product of ``gap`` transition probabilities from token a to token b."""
    best = torch.zeros(probs.shape[0])
    best[a] = 1.0
    for _ in range(gap):
        best = (best[:, None] * probs).amax(0)
    return float(best[b])


def min_link(probs: torch.Tensor, a: int, b: int, gap: int) -> float:
    """The largest eps that leaves a path from a to b: max over paths of their smallest step."""
    width = torch.zeros(probs.shape[0])
    width[a] = 1.0
    for _ in range(gap):
        width = torch.minimum(width[:, None], probs).amax(0)
    return float(width[b])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="experiments/results/support_eps.md")
    args = p.parse_args()
    from seiko.api import compose
    from seiko.checkpoint import load_policy
    from seiko.domains.protein import ProteinDomain

    cfg = compose([])
    denoiser, family, _ = load_policy(cfg.domain.pretrained)
    denoiser.eval()
    domain = ProteinDomain(num_motifs=2, motif_length=4, quantization=4, seed=cfg.domain.seed)
    allowed = domain.function.transition_matrix > 0
    p = next_token_probs(denoiser, family, domain.vocab_size, domain.length)
    alphabet = domain.oracle.alphabet
    links = {m: needed_links(ProteinDomain(num_motifs=m, motif_length=4, quantization=4,
                                           seed=cfg.domain.seed).function) for m in (2, 4)}
    chain = domain.function.transition_matrix
    lines = ["# What the support constraint masks (committed pretrained model, Ehrlich chain seed "
             f"{cfg.domain.seed})", "",
             "Model probability of the next token given one known token, rest masked; a transition is masked "
             "when that probability is below eps. *cut*: consecutive motif elements a->b (offset g) between which "
             "every path of g transitions has a masked step; such a motif can never be completed.", "",
             "| eps | forbidden transitions masked | allowed transitions masked | allowed with T >= 0.001 masked "
             "| motif links cut |", "|---|---|---|---|---|"]
    for eps in EPS:
        masked = p < eps
        needed = [f"{alphabet[a]}->{alphabet[b]} (m{m})" for m, ls in links.items() for a, b, g in ls
                  if min_link(p, a, b, g) < eps]
        lines.append(f"| {eps:g} | {masked[~allowed].float().mean():.3f} | {masked[allowed].float().mean():.3f} "
                     f"| {masked[domain.function.transition_matrix >= 1e-3].float().mean():.3f} "
                     f"| {', '.join(needed) or 'none'} |")
    lines += ["", "Motif links: the largest eps that leaves them a path (its weakest step under the model), and "
              "the chain's probability of the likeliest path (how often the pretrained chain would draw it):", "",
              "| motifs | link | offset | largest eps | likeliest path |", "|---|---|---|---|---|"]
    for m, ls in links.items():
        for a, b, g in ls:
            lines.append(f"| {m} | {alphabet[a]}->{alphabet[b]} | {g} | {min_link(p, a, b, g):.4f} "
                         f"| {best_path(chain, a, b, g):.1e} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
