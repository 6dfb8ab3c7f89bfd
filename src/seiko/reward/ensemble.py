"""Bootstrapped MLP ensemble: M heads, each fitted on its own bootstrap resample.

The spread across heads is the epistemic uncertainty used by UCB and by the
``Bootstrap`` strategy (mean + c * std over heads, or max over heads, as in SEIKO's
bootstrap variant); one random head is a cheap Thompson draw.

The heads are trained jointly in one LightningModule (sum of per-head MSE).  The
resample of head m is stored as multiplicities ``counts[m, i]`` = how often label i was
drawn (indices drawn once per ``set_data`` from a seeded generator); the per-head loss
on a mini-batch is the count-weighted MSE.  On the full batch this is exactly the MSE on
the resample, and it stays correct whatever sampler or sharding Lightning applies.

Heads are MLPs on the flat features (``arch="mlp"``, any domain) or, for sequences,
convolutions over positions followed by a max over positions (``arch="cnn"``). The CNN is
translation invariant: a motif learnt at one position is recognised at every other, which a
per-position one-hot model cannot do. On held-out Ehrlich labels it ranks designs better than
the MLP heads and the GP (``experiments/reward_models.py``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from seiko.reward.base import Posterior, RewardModel, seeded

# "identity": a linear model (the paper's aesthetic reward model is an MLP without nonlinearities)
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "identity": nn.Identity}


def mlp(d_in: int, hidden: int, d_out: int, activation: str, dropout: float, depth: int = 2) -> nn.Sequential:
    """D -> hidden (-> hidden)* -> d_out; SiLU by default so gradients wrt soft inputs are smooth."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


class MotifCNN(nn.Module):
    """Sequence head: Conv1d over positions, max over positions, then an MLP.

    One filter of width ``kernel`` can weight tokens at any set of offsets inside its window,
    and the max finds the best placement, as a spaced motif is scored; the MLP combines motifs.
    Input: flat (soft) one-hots [B, L * vocab_size].
    """

    def __init__(self, vocab_size: int, length: int, channels: int, kernel: int, hidden: int, activation: str,
                 dropout: float):
        super().__init__()
        if kernel > length:
            raise ValueError(f"cnn kernel ({kernel}) is longer than the sequences ({length})")
        self.vocab_size = vocab_size
        self.conv = nn.Conv1d(vocab_size, channels, kernel)
        self.act = ACTIVATIONS[activation]()
        self.head = mlp(channels, hidden, 1, activation, dropout, depth=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.conv(x.reshape(x.shape[0], -1, self.vocab_size).transpose(1, 2)))  # [B, C, windows]
        return self.head(h.amax(-1))


class EnsembleRewardModel(RewardModel):
    def __init__(self, num_heads: int = 4, hidden: int = 256, activation: str = "silu", dropout: float = 0.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int | None = 256,
                 bootstrap: bool = True, seed: int = 0, arch: str = "mlp", vocab_size: int | None = None,
                 channels: int = 64, kernel: int = 16) -> None:
        super().__init__()
        if num_heads < 2:
            raise ValueError(f"an ensemble needs num_heads >= 2 for a spread; got {num_heads}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}")
        if arch not in ("mlp", "cnn"):
            raise ValueError(f"arch must be 'mlp' or 'cnn'; got {arch!r}")
        if arch == "cnn" and (vocab_size is None or vocab_size < 1):
            raise ValueError("arch='cnn' needs vocab_size (the features are flat one-hots [B, L * vocab_size])")
        self.save_hyperparameters()
        self.nets = nn.ModuleList()
        self.register_buffer("counts", torch.empty(0, 0), persistent=False)  # [N, M] multiplicities

    def _build(self, x: Tensor, y: Tensor) -> None:
        hp, n = self.hparams, x.shape[0]
        if hp.bootstrap:
            gen = torch.Generator().manual_seed(hp.seed)
            idx = torch.randint(n, (hp.num_heads, n), generator=gen)
            counts = torch.stack([torch.bincount(i, minlength=n) for i in idx], dim=1)
        else:  # plain deep ensemble: only the initialisations differ
            counts = torch.ones(n, hp.num_heads)
        self.counts = counts.to(x.device, torch.float32)
        with seeded(hp.seed):
            self.nets = nn.ModuleList(self._head(x.shape[1]) for _ in range(hp.num_heads)).to(x.device)

    def _head(self, d_in: int) -> nn.Module:
        hp = self.hparams
        if hp.arch == "mlp":
            return mlp(d_in, hp.hidden, 1, hp.activation, hp.dropout)
        if d_in % hp.vocab_size:
            raise ValueError(f"arch='cnn': feature width {d_in} is not a multiple of vocab_size={hp.vocab_size}")
        return MotifCNN(hp.vocab_size, d_in // hp.vocab_size, hp.channels, hp.kernel, hp.hidden, hp.activation,
                        hp.dropout)

    def _train_tensors(self) -> tuple[Tensor, ...]:
        return self.x_train, self.y_train, self.counts

    def configure_optimizers(self):
        if len(self.nets) == 0:
            raise RuntimeError("EnsembleRewardModel: call set_data before fitting")
        return torch.optim.Adam(self.nets.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def _heads_std(self, x: Tensor) -> Tensor:
        """[M, B] predictions in standardised units."""
        return torch.stack([net(x).squeeze(-1) for net in self.nets])

    def training_step(self, batch, batch_idx):
        x, y, counts = batch
        sq = (self._heads_std(x) - y).pow(2)  # [M, b]
        w = counts.T  # [M, b]
        loss = ((w * sq).sum(1) / w.sum(1).clamp_min(1.0)).sum()
        self.log("reward/ensemble_mse", loss / self.hparams.num_heads, batch_size=x.shape[0])
        return loss

    def heads(self, x: Tensor) -> Tensor:
        """Each head's prediction [M, B], original units, differentiable wrt x."""
        self._check_fitted(x)
        self.eval()  # no dropout at prediction time
        return self._unstandardise(self._heads_std(x.float()))

    def predict(self, x: Tensor) -> Posterior:
        h = self.heads(x)
        return Posterior(h.mean(0), h.std(0))

    def sample_function(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """Thompson draw: one head chosen uniformly at random (a bootstrap posterior sample)."""
        self._check_fitted()
        m = int(torch.randint(self.hparams.num_heads, (1,), generator=generator, device=generator.device))
        net = self.nets[m]

        def f(x: Tensor) -> Tensor:
            self._check_fitted(x)
            self.eval()
            return self._unstandardise(net(x.float()).squeeze(-1))

        return f
