"""SparseLinearRewardModel (reward=sparse_pairs): the L1 fit finds the few pairs that matter,
the posterior on them gives a std that shrinks with labels, and its draws are usable functions."""

import pytest
import torch
import torch.nn.functional as F

from helpers import fit_reward, motif_data, two_rank_trainer
from seiko.reward import PairFeatures, SparseLinearRewardModel

V, L, GAPS = 6, 12, 3
TRUE = {(1, 2, 2): 1.0, (3, 4, 1): 0.5, (5, 0, 3): -0.7}  # (a, b, gap): weight


def pair_data(n: int, seed: int):
    """Random sequences; y = the weights of the TRUE pairs each one holds, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(V, (n, L), generator=g)
    x = F.one_hot(tokens, V).float().flatten(1)
    phi = PairFeatures(V, GAPS)(x).reshape(n, GAPS, V, V)
    y = sum(w * phi[:, gap - 1, a, b] for (a, b, gap), w in TRUE.items())
    return x, y + 0.01 * torch.randn(n, generator=g)


def model(**kw) -> SparseLinearRewardModel:
    return SparseLinearRewardModel(features=PairFeatures(V, GAPS), **kw)


def test_recovers_a_sparse_pair_function_and_keeps_few_pairs():
    x, y = pair_data(400, 0)
    xt, yt = pair_data(200, 1)
    m = fit_reward(model(l1=0.01), x, y, 20)
    with torch.no_grad():
        rmse = (m.predict(xt).mean - yt).pow(2).mean().sqrt().item()
    assert rmse < 0.1 * yt.std().item(), rmse
    assert m.support_size < 30, m.support_size  # of V * V * GAPS = 108 pairs
    support, w, _, _ = m._posterior()
    top = {(int(i) % (V * V) // V, int(i) % V, int(i) // (V * V) + 1) for i in support[w.abs().argsort()[-3:]]}
    assert top == set(TRUE), top


def test_a_motif_is_recognised_where_it_was_never_seen():
    x, y = motif_data(200, 1, range(0, 6))
    xt, yt = motif_data(100, 2, range(8, 12))
    m = fit_reward(SparseLinearRewardModel(features=PairFeatures(4, 4), l1=0.01), x, y, 20)
    with torch.no_grad():
        assert (m.predict(xt).mean - yt).pow(2).mean().sqrt().item() < 0.15


def test_std_shrinks_as_labels_accumulate():
    xt, _ = pair_data(100, 9)
    stds = []
    for n in (40, 400):
        x, y = pair_data(n, 3)
        with torch.no_grad():
            stds.append(fit_reward(model(l1=0.01), x, y, 20).predict(xt).std.mean().item())
    assert stds[1] < 0.5 * stds[0], stds


def test_thompson_draws_differ_from_the_mean_and_are_differentiable():
    x, y = pair_data(60, 4)
    m = fit_reward(model(l1=0.01), x, y, 20)
    f = m.sample_function(torch.Generator().manual_seed(0))
    xs = x[:8].clone().requires_grad_(True)
    out = f(xs)
    out.sum().backward()
    assert out.shape == (8,) and xs.grad.abs().sum() > 0
    assert torch.allclose(f(x[:8]), out.detach())  # one fixed draw
    with torch.no_grad():
        post = m.predict(x[:8])
    assert (out.detach() - post.mean).abs().max() > 0.1 * post.std.mean()


def test_a_penalty_that_keeps_nothing_says_so():
    x, y = pair_data(40, 5)
    with pytest.warns(UserWarning, match="kept no feature"):
        m = fit_reward(model(l1=100.0), x, y, 2)
    with torch.no_grad():
        post = m.predict(x[:4])
    assert torch.allclose(post.mean, y.mean().expand(4), atol=1e-5) and post.std.max() < 1e-4


def test_bad_settings_and_unfitted_use_are_refused():
    with pytest.raises(ValueError, match="l1"):
        model(l1=0.0)
    with pytest.raises(RuntimeError, match="set_data"):
        model().predict(torch.zeros(1, L * V))


def test_a_spawned_ddp_fit_hands_the_weights_back():
    """Two spawned CPU ranks fit; this process gets rank 0's weights (a parameter in the
    state_dict) and predicts as a fit in this process does."""
    x, y = pair_data(200, 0)
    local = fit_reward(model(l1=0.01), x, y, 4)
    spawned = model(l1=0.01)
    spawned.set_data(x, y)
    two_rank_trainer(max_epochs=4).fit(spawned)
    assert spawned.support_size == local.support_size > 0
    with torch.no_grad():
        assert torch.allclose(spawned.predict(x[:20]).mean, local.predict(x[:20]).mean, atol=1e-5)
