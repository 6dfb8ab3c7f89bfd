"""Neural features + Bayesian last layer: the UCB model of the SEIKO paper.

An MLP feature map phi (D -> hidden -> feature_dim) with a linear head is trained by MSE.
After training, the last layer is replaced by its closed-form Bayesian posterior on the
features of all labels (a constant feature is appended for the bias):

    A = Phi^T Phi / noise + lambda I        (Gram matrix, grows with the labels)
    w = A^-1 Phi^T y / noise,   mean(x) = phi(x)^T w,   std(x) = sqrt(phi(x)^T A^-1 phi(x))

``noise`` is the training residual variance (floored at ``min_noise``) unless given;
``lambda`` is the prior precision.

Why the Gram matrix.  The public SEIKO code (zhaoyl18/SEIKO, ``online/dataset.py``
``D_explored.cov`` and ``aesthetic_scorer.py``) computes the bonus with the *sample
covariance* ``torch.cov(features.T) + lambda I``.  A sample covariance is normalised by
the number of labels, so it does not grow as labels accumulate and the bonus
sqrt(phi^T Sigma^-1 phi) never shrinks: exploration pressure stays constant across
rounds.  The paper's bonus (and linear-bandit theory) uses the un-normalised Gram matrix
Phi^T Phi + lambda I, whose inverse decays like 1/n in directions covered by n labels, so
here the bonus does shrink where labels accumulate (tested).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from seiko.reward.base import Posterior, RewardModel, seeded
from seiko.reward.ensemble import ACTIVATIONS


class BayesLinearRewardModel(RewardModel):
    def __init__(self, hidden: int = 256, feature_dim: int = 64, activation: str = "silu",
                 prior_precision: float = 1.0, noise: float | None = None, min_noise: float = 1e-2,
                 lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int | None = 256,
                 seed: int = 0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}")
        if prior_precision <= 0 or (noise is not None and noise <= 0):
            raise ValueError("prior_precision and noise must be > 0")
        self.save_hyperparameters()
        self.phi: nn.Module | None = None
        self.head: nn.Module | None = None
        self._post: tuple[Tensor, Tensor] | None = None  # (w mean, Cholesky of A), float64

    def _build(self, x: Tensor, y: Tensor) -> None:
        hp = self.hparams
        act = ACTIVATIONS[hp.activation]
        with seeded(hp.seed):
            self.phi = nn.Sequential(nn.Linear(x.shape[1], hp.hidden), act(),
                                     nn.Linear(hp.hidden, hp.feature_dim), act()).to(x.device)
            self.head = nn.Linear(hp.feature_dim, 1).to(x.device)
        self._post = None

    def configure_optimizers(self):
        if self.phi is None:
            raise RuntimeError("BayesLinearRewardModel: call set_data before fitting")
        params = list(self.phi.parameters()) + list(self.head.parameters())
        return torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self._post = None
        loss = (self.head(self.phi(x)).squeeze(-1) - y).pow(2).mean()
        self.log("reward/bll_mse", loss, batch_size=x.shape[0])
        return loss

    def on_fit_end(self) -> None:
        self._posterior()

    def _features(self, x: Tensor) -> Tensor:
        f = self.phi(x.float())
        return torch.cat([f, torch.ones_like(f[:, :1])], dim=1).double()  # bias feature

    def _posterior(self) -> tuple[Tensor, Tensor]:
        """Closed-form last layer on the features of all labels (after training)."""
        if self._post is None:
            self._check_fitted()
            hp = self.hparams
            with torch.no_grad():
                Phi, y = self._features(self.x_train), self.y_train.double()
                resid = self.head(self.phi(self.x_train)).squeeze(-1).double() - y
                noise = hp.noise if hp.noise is not None else max(resid.pow(2).mean().item(), hp.min_noise)
                A = Phi.T @ Phi / noise + hp.prior_precision * torch.eye(Phi.shape[1], dtype=Phi.dtype, device=Phi.device)
                L = torch.linalg.cholesky(A)
                w = torch.cholesky_solve((Phi.T @ y / noise)[:, None], L)[:, 0]
            self.noise_ = noise
            self._post = (w, L)
        return self._post

    def predict(self, x: Tensor) -> Posterior:
        self._check_fitted(x)
        w, L = self._posterior()
        f = self._features(x)
        v = torch.linalg.solve_triangular(L, f.T, upper=False)  # ||L^-1 phi||^2 = phi^T A^-1 phi
        std = v.pow(2).sum(0).clamp_min(1e-12).sqrt()
        return self._unstandardise((f @ w).float(), std.float())

    def sample_function(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """Thompson draw: w ~ N(mean, A^-1) once, then x -> phi(x)^T w."""
        self._check_fitted()
        w, L = self._posterior()
        z = torch.randn(w.shape[0], generator=generator, device=generator.device).to(w)
        w_draw = w + torch.linalg.solve_triangular(L.T, z[:, None], upper=True)[:, 0]  # cov L^-T L^-1 = A^-1

        def f(x: Tensor) -> Tensor:
            self._check_fitted(x)
            return self._unstandardise((self._features(x) @ w_draw).float())

        return f
