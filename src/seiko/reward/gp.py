"""Exact Gaussian-process reward model with pathwise (Thompson) posterior samples.

Hyperparameters (constant mean, output scale, lengthscale, noise) are fitted by Adam on
the exact marginal log likelihood, full batch: one optimiser step per Trainer epoch, so
``max_epochs`` is the number of steps.  Prediction uses our own Cholesky of
K + sigma^2 I (float64) so that ``predict`` and ``sample_function`` share one exact
factorisation.

Beyond ``max_exact`` labels the GP is fitted on a seeded uniform random subset of
``max_exact`` of them ("subset of data" approximation, a warning is emitted): honest and
simple; the posterior then ignores the other labels, so the bonus is larger than an
exact GP's would be (conservative).

``sample_function`` draws f ~ GP posterior pathwise (Wilson et al. 2020): a prior draw
from random Fourier features of the learned kernel plus the data-dependent update
k(x, X) (K + sigma^2 I)^-1 (y - f_prior(X) - eps).

``features`` (optional) maps designs to the kernel's inputs first, e.g.
``seiko.reward.PairFeatures`` (``reward=gp_pairs``): the kernel, its lengthscale heuristic and
the Fourier features of Thompson draws then all live in that feature space.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import gpytorch
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from seiko.reward.base import Posterior, RewardModel, seeded


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x: Tensor, y: Tensor, likelihood, kernel: str, nu: float, ard: bool):
        super().__init__(x, y, likelihood)
        dims = x.shape[1] if ard else None
        self.mean_module = gpytorch.means.ConstantMean()
        if kernel == "linear":  # Bayesian linear regression on the inputs; its variance is the scale
            self.covar_module = gpytorch.kernels.LinearKernel()
            return
        if kernel == "tanimoto":  # count fingerprints of molecules (seiko.reward.tanimoto)
            from seiko.reward.tanimoto import TanimotoKernel

            self.covar_module = gpytorch.kernels.ScaleKernel(TanimotoKernel())
            return
        base = (gpytorch.kernels.RBFKernel(ard_num_dims=dims) if kernel == "rbf"
                else gpytorch.kernels.MaternKernel(nu=nu, ard_num_dims=dims))
        self.covar_module = gpytorch.kernels.ScaleKernel(base)

    def forward(self, x: Tensor):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class GPRewardModel(RewardModel):
    def __init__(self, kernel: str = "rbf", nu: float = 2.5, ard: bool = False, lr: float = 0.05,
                 noise_lower_bound: float = 1e-4, max_exact: int = 4000,
                 num_fourier_features: int = 2048, seed: int = 0, features: nn.Module | None = None) -> None:
        super().__init__()
        if kernel not in ("rbf", "matern", "linear", "tanimoto") or nu not in (0.5, 1.5, 2.5):
            raise ValueError(f"reward.model.kernel must be 'rbf', 'matern' (nu in 0.5, 1.5, 2.5), 'linear' or "
                             f"'tanimoto'; got {kernel!r}, {nu}")
        self.save_hyperparameters(ignore=["features"])
        self.features = features
        self.gp: _ExactGP | None = None
        self.register_buffer("x_fit", torch.empty(0, 0), persistent=False)  # exact-GP data
        self.register_buffer("f_fit", torch.empty(0, 0), persistent=False)  # its kernel inputs
        self.register_buffer("y_fit", torch.empty(0), persistent=False)
        self._cache: tuple[Tensor, Tensor] | None = None  # (Cholesky L, alpha), float64

    # ------------------------------------------------------------------ fitting
    def _build(self, x: Tensor, y: Tensor) -> None:
        hp = self.hparams
        if x.shape[0] > hp.max_exact:
            warnings.warn(f"GPRewardModel: {x.shape[0]} labels > max_exact={hp.max_exact}; "
                          "fitting on a random subset (subset-of-data approximation)")
            idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(hp.seed))[: hp.max_exact]
            x, y = x[idx.to(x.device)], y[idx.to(x.device)]
        self.x_fit, self.y_fit = x, y
        with torch.no_grad():
            self.f_fit = self._phi(x)
        with seeded(hp.seed):
            lik = gpytorch.likelihoods.GaussianLikelihood(
                noise_constraint=gpytorch.constraints.GreaterThan(hp.noise_lower_bound))
            self.gp = _ExactGP(self.f_fit, y, lik, hp.kernel, hp.nu, hp.ard).to(x.device)
        lik.noise = max(0.1, 2 * hp.noise_lower_bound)
        sub = self.f_fit[: 1000]
        if hp.kernel == "linear":  # start at prior variance ~1 for a typical design (labels are standardised)
            self.gp.covar_module.variance = 1.0 / sub.pow(2).sum(1).median().clamp_min(1e-6).item()
        elif hp.kernel == "tanimoto":  # no lengthscale; similarities are already in [0, 1]
            pass
        else:  # median heuristic: one-hot designs are ~sqrt(2 * Hamming) apart, far from 1.0
            dist = torch.cdist(sub, sub)
            med = dist[dist > 0].median() if (dist > 0).any() else torch.tensor(1.0)
            self.gp.covar_module.base_kernel.lengthscale = med.clamp_min(1e-3).item()
        self._cache = None

    def train_dataloader(self) -> DataLoader:
        """A single dummy item: each epoch is one full-batch MLL step on every rank."""
        self._check_fitted()
        return DataLoader([0], batch_size=1)

    def configure_optimizers(self):
        if self.gp is None:
            raise RuntimeError("GPRewardModel: call set_data before fitting")
        return torch.optim.Adam(self.gp.parameters(), lr=self.hparams.lr)

    def on_fit_start(self) -> None:
        self._cache = None

    def training_step(self, batch, batch_idx):
        self._cache = None
        self.gp.train()
        self.gp.set_train_data(self.f_fit, self.y_fit, strict=False)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(self.gp.likelihood, self.gp)
        with gpytorch.settings.max_cholesky_size(self.hparams.max_exact + 1):
            loss = -mll(self.gp(self.f_fit), self.y_fit)
        self.log("reward/gp_nll", loss, batch_size=1)
        return loss

    # ------------------------------------------------------------------ posterior
    def _phi(self, x: Tensor) -> Tensor:
        """Designs [B, D] -> kernel inputs (the identity without ``features``)."""
        return x if self.features is None else self.features(x)

    def _k(self, a: Tensor, b: Tensor) -> Tensor:
        """Kernel matrix between kernel inputs (already through ``_phi``)."""
        return self.gp.covar_module(a, b).to_dense()

    def _solve_cache(self) -> tuple[Tensor, Tensor]:
        """Cholesky of K + sigma^2 I on the fitting data and alpha = (K + s^2 I)^-1 (y - m)."""
        if self._cache is None:
            self._check_fitted()
            with torch.no_grad():
                K = self._k(self.f_fit, self.f_fit).double()
                K.diagonal().add_(self.gp.likelihood.noise.double().squeeze())
                L, info = torch.linalg.cholesky_ex(K)
                jitter = 1e-8
                while info.item() != 0:  # float32 kernels of near-duplicates: add jitter
                    K.diagonal().add_(jitter)
                    L, info = torch.linalg.cholesky_ex(K)
                    jitter *= 10
                m = self.gp.mean_module.constant.double()
                alpha = torch.cholesky_solve((self.y_fit.double() - m)[:, None], L)[:, 0]
            self._cache = (L, alpha)
        return self._cache

    def predict(self, x: Tensor) -> Posterior:
        self._check_fitted(x)
        L, alpha = self._solve_cache()
        fx = self._phi(x.to(self.x_fit.dtype))
        kxX = self._k(fx, self.f_fit).double()  # [B, N], differentiable wrt x
        mean = self.gp.mean_module.constant.double() + kxX @ alpha
        v = torch.linalg.solve_triangular(L, kxX.T, upper=False)
        prior_var = self.gp.covar_module(fx, diag=True).double()
        std = (prior_var - v.pow(2).sum(0)).clamp_min(1e-12).sqrt()
        return self._unstandardise(mean.float(), std.float())

    def sample_function(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """Pathwise posterior draw: a prior draw (random Fourier features, or exact weights for the
        linear kernel) + exact data update, fixed once drawn."""
        self._check_fitted()
        L, _ = self._solve_cache()
        hp, dev, g = self.hparams, self.x_fit.device, generator
        (N, D), F = self.f_fit.shape, hp.num_fourier_features
        gd = g.device
        m = self.gp.mean_module.constant.detach()

        def noise() -> Tensor:  # the observation noise of the pathwise update
            return (torch.randn(N, generator=g, device=gd) * self.gp.likelihood.noise.to(gd).sqrt()).to(dev)

        if hp.kernel == "tanimoto":
            raise NotImplementedError("reward.model.kernel=tanimoto has no pathwise posterior draw (no Fourier "
                                      "features); Thompson sampling needs strategy=ts with reward=gp or "
                                      "reward=ensemble; use strategy=ucb or bootstrap with the Tanimoto GP")
        with torch.no_grad():
            if hp.kernel == "linear":
                w = (torch.randn(D, generator=g, device=gd) * self.gp.covar_module.variance.to(gd).sqrt()).to(dev)
                return self._pathwise(lambda fx: m + fx @ w.reshape(-1), noise(), L)  # variance is [1, 1]
            ls = self.gp.covar_module.base_kernel.lengthscale.reshape(-1).to(gd)
            scale = self.gp.covar_module.outputscale.to(gd)
            z = torch.randn(F, D, generator=g, device=gd)
            if hp.kernel == "matern":  # spectral density: Student-t with 2*nu dof
                dof = int(2 * hp.nu)
                u = torch.randn(F, dof, generator=g, device=gd).pow(2).sum(1)
                z = z * (dof / u).sqrt()[:, None]
            omega = (z / ls).to(dev)
            phase = (2 * math.pi * torch.rand(F, generator=g, device=gd)).to(dev)
            w = (torch.randn(F, generator=g, device=gd) * (2 * scale / F).sqrt()).to(dev)
            eps = noise()
        return self._pathwise(lambda fx: m + torch.cos(fx @ omega.T + phase) @ w, eps, L)

    def _pathwise(self, prior: Callable[[Tensor], Tensor], eps: Tensor, L: Tensor) -> Callable[[Tensor], Tensor]:
        """f(x) = prior(phi(x)) + k(phi(x), X) (K + s^2 I)^-1 (y - prior(X) - eps): one posterior draw."""
        with torch.no_grad():
            resid = (self.y_fit - prior(self.f_fit) - eps).double()
            v = torch.cholesky_solve(resid[:, None], L)[:, 0]

        def f(x: Tensor) -> Tensor:
            self._check_fitted(x)
            fx = self._phi(x.to(self.x_fit.dtype))
            update = self._k(fx, self.f_fit).double() @ v
            return self._unstandardise(prior(fx) + update.float())

        return f
