"""PairFeatures and the GP on them (reward=gp_pairs): exact features, translation invariance, novelty."""

import pytest
import torch
import torch.nn.functional as F

from helpers import fit_reward, motif_data
from seiko.reward import GPRewardModel, PairFeatures

V, L = 6, 12


def onehot(seqs) -> torch.Tensor:
    t = torch.as_tensor(seqs)
    return F.one_hot(t, V).float().reshape(t.shape[0], -1)


def test_features_are_the_gapped_pairs_present():
    phi = PairFeatures(vocab_size=3, max_gap=3)(F.one_hot(torch.tensor([[0, 1, 0, 2]]), 3).float().reshape(1, -1))
    assert phi.shape == (1, 3 * 3 * 3)
    present = {tuple(i) for i in phi.reshape(3, 3, 3).nonzero().tolist()}  # (gap - 1, a, b)
    assert present == {(0, 0, 1), (0, 1, 0), (0, 0, 2), (1, 0, 0), (1, 1, 2), (2, 0, 2)}
    # a pair seen twice is still a presence of 1
    twice = PairFeatures(3, 1)(F.one_hot(torch.tensor([[0, 0, 0]]), 3).float().reshape(1, -1))
    assert twice[0, 0].item() == 1.0 and twice.sum().item() == 1.0


def test_gaps_are_capped_at_the_length_and_bad_input_is_refused():
    feats = PairFeatures(vocab_size=V, max_gap=50)
    assert feats(onehot([[0] * L])).shape == (1, V * V * (L - 1)) and feats.out_dim(L) == V * V * (L - 1)
    with pytest.raises(ValueError, match="expects"):
        feats(torch.zeros(2, V * L + 1))
    with pytest.raises(ValueError, match="max_gap"):
        PairFeatures(V, 0)


@pytest.mark.parametrize("reward", ["gp_pairs", "sparse_pairs"])
@pytest.mark.parametrize("size, gap", [
    ([], 15),                                                                     # length 32, 2 motifs: 15
    (["domain.num_motifs=4"], 15),                                                # the tuned 15, not 7
    (["domain.dim=256", "domain.motif_length=8", "domain.num_motifs=4"], 63),     # holo-bench's size
    (["domain.dim=256", "domain.motif_length=8", "domain.num_motifs=2"], 127),
])
def test_the_pair_rewards_reach_across_a_motif_at_any_length(reward, size, gap):
    """A user's `domain.dim=256` alone must give pair features that span a motif (<= dim / num_motifs
    positions), and every length-32 setting keeps the committed 15."""
    from seiko.api import compose

    assert compose([f"reward={reward}", *size]).reward.model.features.max_gap == gap


def test_features_are_differentiable_on_soft_inputs():
    x = torch.full((2, L * V), 1.0 / V, requires_grad=True)
    PairFeatures(V, 4)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_gp_on_pairs_recognises_a_motif_where_it_never_saw_it():
    x, y = motif_data(200, 1, range(0, 6))  # motifs seen only in the first positions
    xt, yt = motif_data(100, 2, range(8, 12))  # tested only further along
    err = {}
    for name, model in {"pairs": GPRewardModel(features=PairFeatures(4, 4)), "one-hot": GPRewardModel()}.items():
        with torch.no_grad():
            pred = fit_reward(model, x, y, 60).predict(xt).mean
        err[name] = (pred - yt).pow(2).mean().sqrt().item()
    assert err["pairs"] < 0.15, err
    assert err["one-hot"] > 0.3, err


def test_std_is_larger_on_designs_with_unseen_pairs():
    x, y = motif_data(100, 0, range(0, 12))
    model = fit_reward(GPRewardModel(features=PairFeatures(4, 4)), x, y, 60)
    seen = x[:20]
    novel = seen.clone().reshape(20, 16, 4)
    novel[:, 15] = F.one_hot(torch.tensor(3), 4).float()  # token 3 never appears in the labels
    with torch.no_grad():
        std_seen, std_novel = model.predict(seen).std, model.predict(novel.reshape(20, -1)).std
    assert (std_novel > 1.5 * std_seen).all(), (std_seen, std_novel)


def test_thompson_draws_on_pairs_are_differentiable_functions_of_designs():
    x, y = motif_data(80, 0, range(0, 12))
    model = fit_reward(GPRewardModel(features=PairFeatures(4, 4), num_fourier_features=256), x, y, 20)
    f = model.sample_function(torch.Generator().manual_seed(0))
    xs = x[:5].clone().requires_grad_(True)
    out = f(xs)
    out.sum().backward()
    assert out.shape == (5,) and xs.grad.abs().sum() > 0
    assert torch.allclose(f(x[:5]), out.detach())  # one fixed draw


def test_linear_kernel_on_pairs_recovers_an_additive_pair_function_and_its_draws_match():
    """kernel=linear is Bayesian linear regression on the pair presences: exact on a function that
    is a weighted sum of pairs, and its pathwise draws (exact Gaussian weights) have predict's moments."""
    feats = PairFeatures(V, 3)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(feats.out_dim(L), generator=g) * (torch.rand(feats.out_dim(L), generator=g) < 0.05)
    x = onehot(torch.randint(0, V, (300, L), generator=g))
    y = feats(x) @ w
    model = fit_reward(GPRewardModel(kernel="linear", features=feats), x[:200], y[:200], 60)
    with torch.no_grad():
        post = model.predict(x[200:])
        draws = torch.stack([model.sample_function(torch.Generator().manual_seed(s))(x[200:210]) for s in range(300)])
    rel = ((post.mean - y[200:]).pow(2).mean() / y[200:].var()).item()
    assert rel < 0.01, rel  # the RBF kernel on the same features leaves ~0.03
    ratio = draws.std(0) / post.std[:10]
    assert ((ratio > 0.8) & (ratio < 1.2)).all(), ratio
    assert ((draws.mean(0) - post.mean[:10]).abs() < 0.3 * post.std[:10]).all()


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel must be"):
        GPRewardModel(kernel="cosine")


def test_ucb_with_gp_pairs_runs_end_to_end(tiny, tmp_path):
    from seiko.api import compose, run

    cfg = compose(tiny + ["strategy=ucb", "reward=gp_pairs"])
    assert cfg.reward.model.features.vocab_size == 8  # follows the domain
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished" and summary["queries"] == 32 and summary["rounds"] == 2
    assert (tmp_path / "ledger.sqlite").exists()
