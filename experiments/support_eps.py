"""Which tokens a support constraint of a given eps masks, on the committed pretrained model.

Why: ``finetune.support_eps`` masks, at every step, tokens the pretrained model gives less than
eps. It is meant to cut the forbidden transitions of the Ehrlich chain (probability 0), but
the chain's allowed transitions are far from uniform: most have probability below 0.01, and
an optimum may need one of them. This measures, for the model behind every protein run, the
model's probability of each next token given one known token (the rest masked, which is the
chain's transition probability T[a, b] for an exact model), and reports per eps the share of
forbidden and of allowed transitions it masks, and whether it masks a transition that a motif
of the benchmark's functions needs between neighbouring positions.

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


def needed_pairs(function, alphabet: str) -> list[tuple[str, str, float]]:
    """Transitions a motif fixes between neighbouring positions (spacing 1): (a, b, T[a, b])."""
    out = []
    for motif, spacing in zip(function.motifs, function.spacings):
        for i, gap in enumerate(spacing.tolist()):
            if gap == 1:
                a, b = int(motif[i]), int(motif[i + 1])
                out.append((alphabet[a], alphabet[b], float(function.transition_matrix[a, b])))
    return out


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
    pairs = {m: needed_pairs(ProteinDomain(num_motifs=m, motif_length=4, quantization=4,
                                           seed=cfg.domain.seed).function, alphabet) for m in (2, 4)}
    lines = ["# What the support constraint masks (committed pretrained model, Ehrlich chain seed "
             f"{cfg.domain.seed})", "",
             "Model probability of the next token given one known token, rest masked; a transition is masked "
             "when that probability is below eps. *needed*: transitions a motif fixes between neighbouring "
             "positions (chain probability T, model probability p).", "",
             "| eps | forbidden transitions masked | allowed transitions masked | allowed with T >= 0.001 masked "
             "| needed transitions masked |", "|---|---|---|---|---|"]
    for eps in EPS:
        masked = p < eps
        needed = [f"{a}{b} (m{m})" for m, ps in pairs.items() for a, b, _ in ps
                  if p[alphabet.index(a), alphabet.index(b)] < eps]
        lines.append(f"| {eps:g} | {masked[~allowed].float().mean():.3f} | {masked[allowed].float().mean():.3f} "
                     f"| {masked[domain.function.transition_matrix >= 1e-3].float().mean():.3f} "
                     f"| {', '.join(needed) or 'none'} |")
    lines += ["", "Needed transitions:", ""]
    for m, ps in pairs.items():
        for a, b, t in ps:
            lines.append(f"- {m} motifs: {a}->{b}: T = {t:.4f}, p = {p[alphabet.index(a), alphabet.index(b)]:.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
