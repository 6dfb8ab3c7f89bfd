"""Sparse linear reward model: an L1 fit picks the few features that matter, a Bayesian linear
posterior on those gives the mean and the std.

Why: on a product of motif terms fitted in log space (``reward.log_floor``) the reward is a sum
over a few gapped token pairs (``seiko.reward.PairFeatures``) out of thousands. A GP or a dense
ridge spreads the credit of a good label over every pair it holds, most of them hitchhikers from
its lineage; an L1 penalty keeps only the pairs that explain labels across lineages. On the
4-motif Ehrlich benchmark it climbs further than the pair GP (docs/protein-benchmark.md, "A sparse reward model on pairs").

Fit, full batch: FISTA (accelerated proximal gradient) on

    (1 / 2n) ||y - Phi w - b||^2 + l1 ||w||_1        (y standardised, Phi the features)

with ``steps_per_epoch`` steps per Trainer epoch, so ``max_epochs * steps_per_epoch`` steps in all.
Phi is stored sparse (a sequence holds a few hundred of the V * V * gaps pairs), so a step
costs O(nonzeros). Then, on the support S (the at most ``max_support`` largest weights), the
closed-form posterior of Bayesian linear regression with the lasso weights as its prior mean:

    A = Phi_S^T Phi_S / noise + prior_precision I,   w_S = w_lasso + A^-1 Phi_S^T (y - Phi w_lasso - b) / noise
    mean(x) = phi_S(x)^T w_S + b,                    std(x) = sqrt(phi_S(x)^T A^-1 phi_S(x))

``noise`` is the lasso's residual variance (floored at ``min_noise``). The std is high on designs
whose selected pairs are rare in the ledger; pairs outside S carry no weight and no std: that is
the sparsity assumption, and what makes the mean sharp.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from seiko.reward.base import Posterior, RewardModel

CHUNK = 2048  # designs per feature chunk: the dense [chunk, V * V * gaps] pairs stay small


class SparseLinearRewardModel(RewardModel):
    def __init__(self, l1: float = 0.003, steps_per_epoch: int = 50, max_support: int = 1024,
                 prior_precision: float = 1.0, min_noise: float = 1e-3, seed: int = 0,
                 features: nn.Module | None = None) -> None:
        super().__init__()
        if l1 <= 0 or steps_per_epoch < 1 or max_support < 1 or prior_precision <= 0 or min_noise <= 0:
            raise ValueError("SparseLinearRewardModel needs l1, prior_precision and min_noise > 0, "
                             "steps_per_epoch and max_support >= 1")
        self.save_hyperparameters(ignore=["features"])
        self.features = features if features is not None else nn.Identity()
        self.automatic_optimization = False  # proximal steps, not an optimiser's
        self._lasso: dict | None = None  # sparse Phi, its centre, labels, step size (_design)
        self._post: tuple | None = None  # (support, w_S, Cholesky of A, intercept), float64
        self._fista: tuple | None = None  # (momentum point, step count) while fitting

    # ------------------------------------------------------------------ fitting
    def _phi(self, x: Tensor) -> Tensor:
        return self.features(x.float())

    def _build(self, x: Tensor, y: Tensor) -> None:
        dim = self._phi(x[:1]).shape[1]
        # A parameter (updated by proximal steps, never by gradients): DDP wraps only modules with
        # one, and a spawned DDP fit hands it back to this process in the state_dict.
        self.weights = nn.Parameter(torch.zeros(dim, dtype=torch.float64, device=x.device))
        self._lasso, self._post = None, None

    def _design(self) -> dict:
        """Sparse Phi (COO for the posterior's columns, CSR and its transpose for the steps), the
        feature means and the FISTA step size: built from the labels when first needed, in
        whichever process fits or predicts."""
        if self._lasso is None:
            self._check_fitted()
            x = self.x_train
            with torch.no_grad():
                rows = [self._phi(x[i:i + CHUNK]).to_sparse() for i in range(0, len(x), CHUNK)]
            phi = torch.cat(rows).coalesce().double()
            n, d = phi.shape
            centre = torch.sparse.sum(phi, 0).to_dense() / n
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
                mat, mat_t = phi.to_sparse_csr(), phi.t().coalesce().to_sparse_csr()
            self._lasso = dict(phi=phi, mat=mat, mat_t=mat_t, centre=centre, y=self.y_train.double())
            # Lipschitz constant of the smooth part: top singular value^2 / n, by power iteration.
            v = torch.ones(d, dtype=torch.float64, device=x.device) / d ** 0.5
            for _ in range(30):
                u = self._times(v)
                v = self._times_t(u)
                norm = v.norm()
                if norm == 0:
                    break
                v = v / norm
            self._lasso["step"] = 1.0 / max(float(norm) / n, 1e-12)
        return self._lasso

    def _times(self, w: Tensor) -> Tensor:
        """(Phi - centre) w, without densifying Phi."""
        s = self._lasso
        return (s["mat"] @ w[:, None])[:, 0] - s["centre"] @ w

    def _times_t(self, r: Tensor) -> Tensor:
        """(Phi - centre)^T r."""
        s = self._lasso
        return (s["mat_t"] @ r[:, None])[:, 0] - s["centre"] * r.sum()

    def _residual(self, w: Tensor) -> Tensor:
        """y - (Phi - centre) w: the intercept of centred features is y's mean, 0 after standardising."""
        return self._design()["y"] - self._times(w)

    def __getstate__(self):
        """Spawned workers rebuild the sparse matrices from the labels rather than pickle them."""
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {**state, "_lasso": None, "_post": None}

    def configure_optimizers(self):
        return None  # Lightning warns "no optimizer"; seiko.cli_support.quiet_lightning drops that line

    def train_dataloader(self) -> DataLoader:
        self._design()
        return DataLoader(TensorDataset(torch.zeros(1)), batch_size=1)  # the data lives in _lasso

    def on_train_start(self) -> None:
        self._fista = (self.weights.detach().clone(), 1.0)  # momentum point and step count, warm from weights

    def training_step(self, batch, batch_idx):
        s = self._design()
        n, thresh = s["y"].shape[0], self.hparams.l1 * s["step"]
        z, t = self._fista
        w = self.weights.detach()
        with torch.no_grad():
            for _ in range(self.hparams.steps_per_epoch):
                grad = -self._times_t(s["y"] - self._times(z)) / n
                w_next = z - s["step"] * grad
                w_next = torch.sign(w_next) * (w_next.abs() - thresh).clamp_min(0.0)
                t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
                z = w_next + (t - 1) / t_next * (w_next - w)
                w, t = w_next, t_next
            self.weights.copy_(w)
            loss = 0.5 * self._residual(w).pow(2).mean() + self.hparams.l1 * w.abs().sum()
        self._fista, self._post = (z, t), None
        self.log("reward/lasso_loss", float(loss), batch_size=1)
        self.log("reward/lasso_support", float((w != 0).sum()), batch_size=1)

    def on_fit_end(self) -> None:
        self._posterior()

    def _posterior(self) -> tuple:
        if self._post is None:
            hp, s = self.hparams, self._design()
            w = self.weights.detach()
            support = torch.argsort(-w.abs())[:hp.max_support]
            support = support[w[support] != 0].sort().values
            if len(support) == 0:
                warnings.warn(f"SparseLinearRewardModel: l1={hp.l1} kept no feature of {len(w)}; it predicts "
                              f"the labels' mean with no std (lower reward.model.l1)", stacklevel=2)
            resid = self._residual(w)
            noise = max(float(resid.pow(2).mean()), hp.min_noise)
            phi = s["phi"].index_select(1, support).to_dense()
            centre = s["centre"][support]
            phi = phi - centre
            a = phi.T @ phi / noise + hp.prior_precision * torch.eye(len(support), dtype=torch.float64, device=phi.device)
            chol = torch.linalg.cholesky(a)
            w_s = w[support] + torch.cholesky_solve((phi.T @ resid / noise)[:, None], chol)[:, 0]
            self.noise_ = noise
            self._post = (support, w_s, chol, -(centre @ w_s))
        return self._post

    # ------------------------------------------------------------------ prediction
    @property
    def support_size(self) -> int:
        """How many features carry weight: what the L1 penalty kept."""
        return len(self._posterior()[0])

    def predict(self, x: Tensor) -> Posterior:
        self._check_fitted(x)
        support, w, chol, bias = self._posterior()
        f = self._phi(x)[:, support].double()
        v = torch.linalg.solve_triangular(chol, f.T, upper=False)  # ||L^-1 phi||^2 = phi^T A^-1 phi
        std = v.pow(2).sum(0).clamp_min(1e-12).sqrt()
        return self._unstandardise((f @ w + bias).float(), std.float())

    def sample_function(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """Thompson draw: w_S ~ N(w_S, A^-1) once, then x -> phi_S(x)^T w + b."""
        support, w, chol, _ = self._posterior()
        z = torch.randn(len(w), generator=generator, device=generator.device).to(w)
        w_draw = w + torch.linalg.solve_triangular(chol.T, z[:, None], upper=True)[:, 0]
        bias_draw = -(self._design()["centre"][support] @ w_draw)  # centred features, as for the mean

        def f(x: Tensor) -> Tensor:
            self._check_fitted(x)
            return self._unstandardise((self._phi(x)[:, support].double() @ w_draw + bias_draw).float())

        return f
