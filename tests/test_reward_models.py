"""Reward models: recovery, shrinking bonus, Thompson draws, gradients, standardisation."""

import pytest
import torch

from helpers import fit_reward
from seiko.reward import BayesLinearRewardModel, EnsembleRewardModel, GPRewardModel, Posterior

# name -> (constructor, Trainer epochs, held-out RMSE tolerance; y has std ~0.8)
MODELS = {
    "gp": (lambda: GPRewardModel(), 100, 0.05),
    "gp_matern": (lambda: GPRewardModel(kernel="matern", nu=2.5), 100, 0.05),
    "ensemble": (lambda: EnsembleRewardModel(hidden=64, batch_size=None, lr=1e-2), 300, 0.1),
    "bayes_linear": (lambda: BayesLinearRewardModel(hidden=64, feature_dim=32, batch_size=None, lr=1e-2), 300, 0.1),
}
CALIBRATED = ["gp", "gp_matern", "bayes_linear"]  # exact Gaussian posteriors: draws must match predict
PROBES = torch.tensor([[0.0, 0.0], [0.5, -0.5], [0.95, 0.95], [-1.2, 0.3], [1.3, 1.3], [2.0, -2.0]])


def toy(n: int, seed: int, lo: float = -1.0, hi: float = 1.0):
    """y = sin(3 x1) + x2^2 on uniform points in [lo, hi]^2."""
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * (hi - lo) + lo
    return x, torch.sin(3 * x[:, 0]) + x[:, 1] ** 2


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request):
    make, epochs, tol = MODELS[request.param]
    return request.param, fit_reward(make(), *toy(200, 0), epochs), tol


def test_recovers_known_function(fitted):
    name, model, tol = fitted
    xt, yt = toy(200, 1)
    post = model.predict(xt)
    assert isinstance(post, Posterior) and post.mean.shape == post.std.shape == (200,)
    rmse = (post.mean - yt).pow(2).mean().sqrt().item()
    assert rmse < tol, f"{name}: held-out RMSE {rmse:.3f} >= {tol}"
    assert (post.std >= 0).all()


def test_gradients_flow(fitted):
    name, model, _ = fitted
    for fn in (lambda x: model.predict(x).mean, lambda x: model.predict(x).std,
               model.sample_function(torch.Generator().manual_seed(0))):
        x = PROBES.clone().requires_grad_(True)
        fn(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name


def test_thompson_draw_is_a_fixed_different_function(fitted):
    name, model, _ = fitted
    mean = model.predict(PROBES).mean.detach()
    f = model.sample_function(torch.Generator().manual_seed(1))
    torch.testing.assert_close(f(PROBES), f(PROBES), rtol=0, atol=0)  # deterministic once drawn
    torch.testing.assert_close(f(PROBES), model.sample_function(torch.Generator().manual_seed(1))(PROBES))
    draws = torch.stack([model.sample_function(torch.Generator().manual_seed(s))(PROBES) for s in range(2, 6)])
    assert (draws - mean).abs().amax(1).min() > 1e-3, f"{name}: a draw equals the posterior mean"
    assert (draws[1:] - draws[:1]).abs().amax(1).min() > 1e-3, f"{name}: draws with different generators coincide"


@pytest.mark.parametrize("name", CALIBRATED)
def test_thompson_draws_match_posterior(name):
    """Pathwise GP draws (RFF prior + update) and Bayesian-last-layer draws have predict's moments."""
    make, epochs, _ = MODELS[name]
    model = fit_reward(make(), *toy(100, 0), epochs)
    post = model.predict(PROBES)
    with torch.no_grad():
        draws = torch.stack([model.sample_function(torch.Generator().manual_seed(s))(PROBES) for s in range(300)])
    ratio = draws.std(0) / post.std.detach()
    assert ((ratio > 0.8) & (ratio < 1.2)).all(), f"{name}: draw std / posterior std = {ratio}"
    assert ((draws.mean(0) - post.mean.detach()).abs() < 0.3 * post.std.detach()).all()


@pytest.mark.parametrize("name", ["gp", "bayes_linear"])
def test_bonus_shrinks_where_labels_accumulate(name):
    make, epochs, _ = MODELS[name]
    x, y = toy(100, 2, lo=-1.0, hi=0.0)  # labels only in the lower-left quadrant
    covered, target = torch.tensor([[-0.5, -0.5]]), torch.tensor([[0.7, 0.7]])
    model = fit_reward(make(), x, y, epochs)
    std_covered, std_target = model.predict(covered).std.item(), model.predict(target).std.item()
    assert std_covered < 0.5 * std_target, (std_covered, std_target)
    near = target + 0.1 * torch.randn(100, 2, generator=torch.Generator().manual_seed(3))
    x2 = torch.cat([x, near])
    model = fit_reward(make(), x2, torch.sin(3 * x2[:, 0]) + x2[:, 1] ** 2, epochs)
    std_after = model.predict(target).std.item()
    assert std_after < 0.5 * std_target, f"{name}: std at target {std_target:.4f} -> {std_after:.4f}"


@pytest.mark.parametrize("name", ["gp", "ensemble", "bayes_linear"])
def test_labels_are_standardised(name):
    make, _, _ = MODELS[name]
    x, y = toy(100, 4)
    xt = toy(20, 5)[0]
    a = fit_reward(make(), x, y, 60).predict(xt)
    b = fit_reward(make(), x, y * 1000 + 5, 60).predict(xt)
    torch.testing.assert_close(b.mean, a.mean * 1000 + 5, atol=10.0, rtol=0)  # 1% of a label unit
    torch.testing.assert_close(b.std, a.std * 1000, atol=10.0, rtol=0.02)


def test_ensemble_heads_are_bootstrapped_and_deterministic():
    make, epochs, _ = MODELS["ensemble"]
    x, y = toy(100, 6)
    m1, m2 = fit_reward(make(), x, y, 50), fit_reward(make(), x, y, 50)
    h = m1.heads(PROBES)
    assert h.shape == (4, len(PROBES))
    torch.testing.assert_close(m1.predict(PROBES).mean, h.mean(0))
    torch.testing.assert_close(m1.predict(PROBES).std, h.std(0))
    torch.testing.assert_close(h, m2.heads(PROBES))  # same seed, same resamples and init
    counts = m1.counts
    assert (counts.sum(0) == 100).all() and not torch.equal(counts[:, 0], counts[:, 1])


def test_gp_has_no_heads_and_subsamples_beyond_max_exact():
    x, y = toy(200, 7)
    with pytest.warns(UserWarning, match="max_exact"):
        model = fit_reward(GPRewardModel(max_exact=80), x, y, 50)
    assert model.x_fit.shape == (80, 2) and model.n_labels == 200
    assert not model.has_heads
    with pytest.raises(NotImplementedError, match="use reward=ensemble"):
        model.heads(PROBES)


@pytest.mark.parametrize("cls", [GPRewardModel, EnsembleRewardModel, BayesLinearRewardModel])
def test_set_data_validates(cls):
    model = cls(seed=3)
    assert model.hparams.seed == 3
    with pytest.raises(RuntimeError, match="set_data"):
        model.predict(PROBES)
    x, y = toy(10, 0)
    for bad in [(x, y[:5]), (x[:0], y[:0]), (x, y[:, None]), (x, torch.full_like(y, float("nan")))]:
        with pytest.raises(ValueError):
            model.set_data(*bad)
