"""Exploration strategies: exact objectives, errors, Thompson draws, gradients."""

import pytest
import torch

from seiko.reward import BayesLinearRewardModel, EnsembleRewardModel, GPRewardModel
from seiko.strategies import UCB, Bootstrap, Greedy, NonAdaptive, Strategy, ThompsonSampling
from helpers import fit_reward, gen

ALL = [NonAdaptive, Greedy, UCB, Bootstrap, ThompsonSampling]
X = torch.tensor([[0.0, 0.0], [0.5, -0.5], [0.9, 0.9], [2.0, -2.0]])


@pytest.fixture(scope="module")
def models():
    x = torch.rand(100, 2, generator=gen(0)) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + x[:, 1] ** 2
    out = {}
    for name, model, epochs in [("gp", GPRewardModel(), 50),
                                ("ensemble", EnsembleRewardModel(hidden=32, batch_size=None, lr=1e-2), 100),
                                ("bayes_linear", BayesLinearRewardModel(hidden=32, feature_dim=16,
                                                                        batch_size=None, lr=1e-2), 100)]:
        out[name] = fit_reward(model, x, y, epochs)
    return out


@pytest.mark.parametrize("cls", ALL)
def test_negative_bonus_rejected(cls):
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="bonus"):
            cls(bonus=bad)
    assert cls(bonus=0.0).bonus == 0.0 and isinstance(cls(), Strategy)


def test_rounds_and_names():
    assert NonAdaptive().rounds == "single"
    assert all(cls().rounds == "schedule" for cls in ALL[1:])
    assert len({cls.name for cls in ALL}) == len(ALL)


@pytest.mark.parametrize("name", ["gp", "ensemble", "bayes_linear"])
@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
def test_ucb_is_mean_plus_c_std(models, name, c):
    post = models[name].predict(X)
    torch.testing.assert_close(UCB(bonus=c).objective(models[name], gen(0))(X), post.mean + c * post.std,
                               rtol=0, atol=0)


def test_ucb_clips_bonus(models):
    post = models["gp"].predict(X)
    value = UCB(bonus=2.0, max_bonus=0.1).objective(models["gp"], gen(0))(X)
    torch.testing.assert_close(value, post.mean + (2.0 * post.std).clamp(max=0.1))
    assert (2.0 * post.std > 0.1).any()  # the far point is actually clipped
    with pytest.raises(ValueError):
        UCB(max_bonus=-1.0)


@pytest.mark.parametrize("cls", [Greedy, NonAdaptive])
def test_mean_strategies(models, cls):
    for model in models.values():
        torch.testing.assert_close(cls().objective(model, gen(0))(X), model.predict(X).mean)


def test_bootstrap_over_heads(models):
    model = models["ensemble"]
    h = model.heads(X)
    torch.testing.assert_close(Bootstrap(bonus=1.5).objective(model, gen(0))(X), h.mean(0) + 1.5 * h.std(0))
    torch.testing.assert_close(Bootstrap(reduce="max").objective(model, gen(0))(X), h.amax(0))
    with pytest.raises(ValueError, match="reduce"):
        Bootstrap(reduce="min")


@pytest.mark.parametrize("name", ["gp", "bayes_linear"])
def test_bootstrap_needs_heads(models, name):
    with pytest.raises(NotImplementedError, match="use reward=ensemble"):
        Bootstrap().objective(models[name], gen(0))


@pytest.mark.parametrize("name", ["gp", "ensemble", "bayes_linear"])
def test_thompson_draws_once_per_objective(models, name):
    model, ts = models[name], ThompsonSampling()
    f = ts.objective(model, gen(1))
    torch.testing.assert_close(f(X), f(X), rtol=0, atol=0)
    torch.testing.assert_close(f(X), ts.objective(model, gen(1))(X))
    others = torch.stack([ts.objective(model, gen(s))(X) for s in range(2, 8)])
    assert (others - f(X)).abs().amax(1).max() > 1e-3  # different generators, different functions
    assert (others - model.predict(X).mean).abs().amax(1).min() > 1e-4  # no draw is the mean


@pytest.mark.parametrize("strategy", [NonAdaptive(), Greedy(), UCB(bonus=1.0), UCB(bonus=1.0, max_bonus=0.5),
                                      Bootstrap(), Bootstrap(reduce="max"), ThompsonSampling()], ids=repr)
def test_objective_gradients_flow(models, strategy):
    for name, model in models.items():
        if isinstance(strategy, Bootstrap) and not model.has_heads:
            continue
        x = X.clone().requires_grad_(True)
        strategy.objective(model, gen(0))(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, (name, strategy)


def test_hydra_instantiate():
    hydra = pytest.importorskip("hydra.utils")
    s = hydra.instantiate({"_target_": "seiko.strategies.UCB", "bonus": 2.0, "max_bonus": 1.0})
    assert isinstance(s, UCB) and s.bonus == 2.0 and s.max_bonus == 1.0


def test_holo_ga_evolves_the_labelled_generation_with_holos_own_step(tiny, tmp_path):
    """strategy=holo_ga: round 1 is one DiscreteEvolution step of round 0's labelled designs, so
    its designs are near round 0's best (at 1/length mutation a child is a few tokens from a
    parent), and the step is deterministic given the seed (resume rebuilds it from the ledger)."""
    import sqlite3

    from seiko.api import build_loop, compose

    cfg = compose(tiny + ["strategy=holo_ga", "budget.per_round=[32,32]"])
    loop = build_loop(cfg, tmp_path / "a")
    loop.run()
    rows = sqlite3.connect(tmp_path / "a" / "ledger.sqlite").execute(
        "select round, design, value from queries order by id").fetchall()
    first = [(d, v if v is not None else float("-inf")) for r, d, v in rows if r == 0]
    second = [d for r, d, _ in rows if r == 1]
    best = sorted(first, key=lambda dv: -dv[1])[: max(2, int(0.1 * 32))]
    near = [min(sum(a != b for a, b in zip(d, p)) for p, _ in first) for d in second]
    assert sum(n <= 3 for n in near) >= 24, near  # children of round-0 designs, a few tokens away
    assert any(min(sum(a != b for a, b in zip(d, p)) for p, _ in best) <= 3 for d in second)
    again = build_loop(cfg, tmp_path / "b")
    again.run()
    rows_b = sqlite3.connect(tmp_path / "b" / "ledger.sqlite").execute(
        "select design from queries where round = 1 order by id").fetchall()
    assert [d for (d,) in rows_b] == second
    resumed = build_loop(compose(tiny + ["strategy=holo_ga", "budget.per_round=[32,32]"]), tmp_path / "c")
    resumed.run_round(0)
    resumed.ledger.close()
    resumed = build_loop(compose(tiny + ["strategy=holo_ga", "budget.per_round=[32,32]", "resume=true"]), tmp_path / "c")
    assert resumed._restore() == 1
    assert resumed.domain.decode(resumed.method.propose(1, 32, resumed.generator(1, 0))) == second
