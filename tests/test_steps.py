"""Step distributions: exact KL / log-prob against torch.distributions, sampling, reparameterisation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Normal, kl_divergence

from seiko.diffusion import CategoricalStep, GaussianStep
from helpers import gen


B, L, V = 3, 5, 4


@pytest.fixture
def cat_pair():
    g = gen(0)
    p = torch.randn(B, L, V, generator=g) * 2
    q = torch.randn(B, L, V, generator=g) * 2
    update = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    return p, q, update


# ---------------------------------------------------------------- CategoricalStep


def test_categorical_kl_matches_hand_computed_sum(cat_pair):
    p, q, update = cat_pair
    kl = CategoricalStep(p, update).kl(CategoricalStep(q, update))
    assert kl.shape == (B,)
    # Explicit double loop over updated positions: sum_v p log(p / q).
    expected = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        for i in range(L):
            if update[b, i]:
                pp = torch.softmax(p[b, i].double(), -1)
                qq = torch.softmax(q[b, i].double(), -1)
                expected[b] += (pp * (pp / qq).log()).sum()
    torch.testing.assert_close(kl.double(), expected, atol=1e-5, rtol=1e-5)
    # Same thing with torch.distributions.
    ref = (kl_divergence(Categorical(logits=p), Categorical(logits=q)) * update).sum(-1)
    torch.testing.assert_close(kl, ref, atol=1e-5, rtol=1e-5)
    assert kl[1] == 0  # row with no update
    assert (kl[[0, 2]] > 0.1).all()


def test_categorical_kl_ignores_positions_not_updated(cat_pair):
    p, q, update = cat_pair
    kl = CategoricalStep(p, update).kl(CategoricalStep(q, update))
    q2 = torch.where(update.unsqueeze(-1), q, q + 10 * torch.randn(q.shape, generator=gen(1)))
    p2 = torch.where(update.unsqueeze(-1), p, -p)
    torch.testing.assert_close(CategoricalStep(p2, update).kl(CategoricalStep(q2, update)), kl)
    none = torch.zeros_like(update)
    assert torch.equal(CategoricalStep(p, none).kl(CategoricalStep(q, none)), torch.zeros(B))


def test_categorical_kl_to_itself_is_zero(cat_pair):
    p, _, update = cat_pair
    step = CategoricalStep(p, update)
    torch.testing.assert_close(step.kl(step), torch.zeros(B), atol=1e-6, rtol=0)
    # Shifting all logits by a constant is the same distribution.
    torch.testing.assert_close(step.kl(CategoricalStep(p + 3.0, update)), torch.zeros(B), atol=1e-5, rtol=0)


def test_categorical_log_prob(cat_pair):
    p, _, update = cat_pair
    tokens = torch.randint(0, V, (B, L), generator=gen(2))
    tokens = tokens.masked_fill(~update, V)  # not-updated positions may hold the mask id
    lp = CategoricalStep(p, update).log_prob(tokens)
    assert lp.shape == (B,)
    ls = F.log_softmax(p.double(), -1)
    expected = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        for i in range(L):
            if update[b, i]:
                expected[b] += ls[b, i, tokens[b, i]]
    torch.testing.assert_close(lp.double(), expected, atol=1e-5, rtol=1e-5)
    assert lp[1] == 0
    assert (lp[[0, 2]] < 0).all()


def test_categorical_sample_frequencies_and_untouched_positions():
    n, length = 20000, 4
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-3.0, 1.0, 1.0, 0.0],
                           [5.0, 5.0, 5.0, 5.0]]).expand(n, length, V)
    update = torch.tensor([True, True, True, False]).expand(n, length)
    tokens = torch.full((n, length), V)  # all mask
    tokens[:, 3] = 2  # an already-unmasked position
    out = CategoricalStep(logits, update).sample(tokens, gen(3))
    assert out.shape == (n, length) and out.dtype == torch.long
    assert (out[:, 3] == 2).all()
    assert ((out[:, :3] >= 0) & (out[:, :3] < V)).all()
    probs = torch.softmax(logits[0], -1)
    for i in range(3):
        freq = torch.bincount(out[:, i], minlength=V).double() / n
        chi2 = (n * (freq - probs[i].double()) ** 2 / probs[i].double()).sum()
        assert chi2 < 25, (i, freq, probs[i])  # df = 3; p-value ~ 1e-5
        assert (freq - probs[i]).abs().max() < 0.02


def test_categorical_sample_is_reproducible_with_generator(cat_pair):
    p, _, update = cat_pair
    tokens = torch.full((B, L), V)
    a = CategoricalStep(p, update).sample(tokens, gen(4))
    b = CategoricalStep(p, update).sample(tokens, gen(4))
    assert torch.equal(a, b)
    assert torch.equal(a[~update], tokens[~update])


def test_categorical_rsample_hard_one_hot_and_gradient(cat_pair):
    p, _, update = cat_pair
    logits = p.clone().requires_grad_(True)
    # Input state: a mix of masked positions and unmasked one-hots over V + 1 channels.
    tokens = torch.randint(0, V + 1, (B, L), generator=gen(5))
    state = F.one_hot(tokens, V + 1).float()
    out = CategoricalStep(logits, update).rsample(state, tau=1.0, hard=True, generator=gen(6))
    assert out.shape == (B, L, V + 1)
    upd = out[update]
    assert torch.equal(upd[:, V], torch.zeros(len(upd)))  # mask channel exactly 0
    # Forward value is one-hot (straight-through adds and subtracts the soft sample: allow 1 ulp).
    rounded = upd.round()
    torch.testing.assert_close(upd, rounded, atol=1e-6, rtol=0)
    assert torch.equal(rounded.sum(-1), torch.ones(len(upd)))
    assert set(rounded.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out[~update], state[~update])
    w = torch.randn(B, L, V + 1, generator=gen(7))
    (out * w).sum().backward()
    grad = logits.grad
    assert grad.abs().sum() > 0
    assert (grad[update].abs().sum(-1) > 0).all()
    assert torch.equal(grad[~update], torch.zeros_like(grad[~update]))


def test_categorical_rsample_soft_and_gumbel_max_frequencies():
    n = 20000
    logits = torch.tensor([1.5, 0.0, -1.0, 0.5]).expand(n, 1, V)
    update = torch.ones(n, 1, dtype=torch.bool)
    state = F.one_hot(torch.full((n, 1), V), V + 1).float()
    soft = CategoricalStep(logits, update).rsample(state, tau=1.0, hard=False, generator=gen(8))
    torch.testing.assert_close(soft.sum(-1), torch.ones(n, 1))
    assert (soft[..., :V] < 0.999).any()  # genuinely soft
    hard = CategoricalStep(logits, update).rsample(state, tau=0.5, hard=True, generator=gen(8))
    freq = hard[:, 0, :V].round().sum(0).double() / n
    probs = torch.softmax(logits[0, 0], -1).double()
    chi2 = (n * (freq - probs) ** 2 / probs).sum()
    assert chi2 < 25, (freq, probs)  # Gumbel-max draws follow softmax(logits)


# ---------------------------------------------------------------- GaussianStep


def test_gaussian_kl_equal_std_closed_form():
    g = gen(10)
    m1, m2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    sigma = torch.tensor(0.3)
    kl = GaussianStep(m1, sigma).kl(GaussianStep(m2, sigma))
    assert kl.shape == (4,)
    torch.testing.assert_close(kl, ((m1 - m2) ** 2).sum(-1) / (2 * 0.3**2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(GaussianStep(m1, sigma).kl(GaussianStep(m1, sigma)), torch.zeros(4))


def test_gaussian_kl_unequal_std_matches_torch():
    g = gen(11)
    m1, m2 = torch.randn(4, 2, 3, generator=g), torch.randn(4, 2, 3, generator=g)
    s1 = torch.rand(4, 2, 3, generator=g) + 0.2
    s2 = torch.tensor(0.7)
    kl = GaussianStep(m1, s1).kl(GaussianStep(m2, s2))
    ref = kl_divergence(Normal(m1, s1), Normal(m2, s2.expand_as(m2))).flatten(1).sum(-1)
    torch.testing.assert_close(kl, ref, rtol=1e-5, atol=1e-5)
    # Scalar std on both sides, different values.
    kl2 = GaussianStep(m1, torch.tensor(0.5)).kl(GaussianStep(m2, torch.tensor(1.5)))
    ref2 = kl_divergence(Normal(m1, 0.5), Normal(m2, 1.5)).flatten(1).sum(-1)
    torch.testing.assert_close(kl2, ref2, rtol=1e-5, atol=1e-5)
    # Same mean, different std: still positive.
    assert (GaussianStep(m1, torch.tensor(0.5)).kl(GaussianStep(m1, torch.tensor(1.0))) > 0).all()
    # kl_per_dim divides by the number of dimensions of one sample (2 * 3 = 6).
    torch.testing.assert_close(GaussianStep(m1, s1).kl_per_dim(GaussianStep(m2, s2)), kl / 6)


def test_gaussian_log_prob_matches_torch():
    g = gen(12)
    mean = torch.randn(5, 3, generator=g)
    x = torch.randn(5, 3, generator=g)
    for std in [torch.tensor(0.4), torch.rand(5, 3, generator=g) + 0.1]:
        lp = GaussianStep(mean, std).log_prob(x)
        ref = Normal(mean, std.expand_as(mean)).log_prob(x).sum(-1)
        assert lp.shape == (5,)
        torch.testing.assert_close(lp, ref, rtol=1e-5, atol=1e-5)


def test_gaussian_rsample_differentiable_and_distributed():
    mean = torch.tensor([[1.0, -2.0]]).repeat(20000, 1).requires_grad_(True)
    std = torch.tensor(0.5, requires_grad=True)
    x = GaussianStep(mean, std).rsample(gen(13))
    assert x.shape == mean.shape
    (x * 2).sum().backward()
    torch.testing.assert_close(mean.grad, torch.full_like(mean, 2.0))
    assert std.grad is not None and std.grad.abs() > 0
    torch.testing.assert_close(x.detach().mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(x.detach().std(0), torch.tensor([0.5, 0.5]), atol=0.02, rtol=0)
    # Same generator seed, same draw.
    torch.testing.assert_close(GaussianStep(mean, std).sample(gen(13)), x)
    assert math.isclose(float(GaussianStep(mean, std).log_prob(x.detach()).mean().detach() / 2),
                        -0.5 - math.log(0.5) - 0.5 * math.log(2 * math.pi), abs_tol=0.03)
