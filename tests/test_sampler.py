"""Masked and Gaussian diffusion, the sampler, trajectories and relaxed rollouts.

The key test drives the masked sampler with the exact posterior of an Ehrlich function's Markov
chain: a correct any-order sampler must then produce only feasible sequences, with the chain's
marginals and log-likelihoods.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seiko.diffusion import (GaussianDiffusion, GaussianStep, MaskedDiffusion, MLPDenoiser, SequenceDenoiser,
                             relaxed_rollout, sample, trajectory_log_probs)
from seiko.domains.protein import ChainPosteriorDenoiser, ProteinDomain
from helpers import gen


def tiny_denoiser(vocab: int, length: int, seed: int) -> SequenceDenoiser:
    torch.manual_seed(seed)
    return SequenceDenoiser(vocab, length, d_model=32, num_layers=1, num_heads=2, conv_kernel=3).eval()


@pytest.fixture(scope="module")
def small_domain():
    return ProteinDomain(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3, seed=0)


@pytest.fixture(scope="module")
def default_domain():
    return ProteinDomain()


def chain_log_likelihood(domain: ProteinDomain, tokens: torch.Tensor) -> torch.Tensor:
    trans = domain.function.transition_matrix.double()
    init = domain.function.stationary_dist.squeeze(-1).double()
    return init[tokens[:, 0]].log() + trans[tokens[:, :-1], tokens[:, 1:]].log().sum(-1)


# ---------------------------------------------------------------- MaskedDiffusion bookkeeping


@pytest.mark.parametrize("length,num_steps", [(1, 1), (5, 1), (5, 5), (7, 3), (12, 5), (32, 7), (32, 32)])
def test_unmask_counts(length, num_steps):
    fam = MaskedDiffusion(4, length, num_steps)
    assert len(fam.unmask_counts) == num_steps == fam.num_steps
    assert sum(fam.unmask_counts) == length
    assert min(fam.unmask_counts) >= 1
    assert max(fam.unmask_counts) - min(fam.unmask_counts) <= 1


def test_num_steps_defaults_to_length_and_is_validated():
    assert MaskedDiffusion(4, 9).num_steps == 9
    for bad in [0, -1, 10, 100]:
        with pytest.raises(ValueError, match="num_steps"):
            MaskedDiffusion(4, 9, bad)


def test_selection_picks_count_among_masked_only():
    fam = MaskedDiffusion(5, 10, 4)  # counts 3, 3, 2, 2
    assert fam.unmask_counts == [3, 3, 2, 2]
    tokens = torch.randint(0, 5, (64, 10), generator=gen(0))
    state = fam.prior(64)
    assert torch.equal(state, torch.full((64, 10), 5))
    g = gen(1)
    seen = torch.zeros(64, 10, dtype=torch.bool)
    for step in range(fam.num_steps):
        masked = fam.is_masked(state)
        sel = fam.selection(state, step, g)
        assert sel.dtype == torch.bool and sel.shape == (64, 10)
        assert torch.equal(sel.sum(-1), torch.full((64,), fam.unmask_counts[step]))
        assert not (sel & ~masked).any()
        # Same selection from the relaxed (one-hot) representation of the state.
        assert torch.equal(fam.is_masked(fam.relax(state)), masked)
        seen |= sel
        state = torch.where(sel, tokens, state)
    assert seen.all()
    assert torch.equal(state, tokens)


def test_selection_is_uniform_over_masked_positions():
    fam = MaskedDiffusion(3, 6, 6)
    state = torch.full((6000, 6), 3)
    state[:, [1, 4]] = 0  # two positions already unmasked
    sel = fam.selection(state, 2, gen(2))
    assert torch.equal(sel.sum(-1), torch.ones(6000, dtype=torch.long))
    freq = sel.double().mean(0)
    assert freq[1] == 0 and freq[4] == 0
    torch.testing.assert_close(freq[[0, 2, 3, 5]], torch.full((4,), 0.25, dtype=torch.float64), atol=0.03, rtol=0)


def test_trajectory_of_ends_at_tokens():
    fam = MaskedDiffusion(6, 9, 4)
    tokens = torch.randint(0, 6, (20, 9), generator=gen(3))
    model = torch.nn.Sequential(torch.nn.Embedding(7, 6))
    traj = fam.trajectory_of(tokens, gen(4), model=lambda x, t: model(x))
    states, selections = traj.states, traj.selections
    assert len(states) == fam.num_steps + 1 and len(selections) == fam.num_steps
    assert (states[0] == fam.mask_id).all()
    assert torch.equal(states[-1], tokens)
    for step, sel in enumerate(selections):
        newly = (states[step] == fam.mask_id) & (states[step + 1] != fam.mask_id)
        assert torch.equal(newly, sel)
        assert torch.equal(sel.sum(-1), torch.full((20,), fam.unmask_counts[step]))
        assert torch.equal(states[step + 1][sel], tokens[sel])
        assert torch.equal(states[step + 1][~sel], states[step][~sel])
    # the model's log-probs of its steps
    assert traj.log_probs.shape == (fam.num_steps, 20)
    assert torch.isfinite(traj.log_probs).all() and (traj.log_probs <= 0).all()
    with pytest.raises(ValueError, match="model="):
        fam.trajectory_of(tokens, gen(4))


def test_sample_leaves_no_mask():
    fam = MaskedDiffusion(5, 8, 3)
    x = sample(tiny_denoiser(5, 8, 0), fam, 50, gen(5))
    assert x.shape == (50, 8) and x.dtype == torch.long
    assert ((x >= 0) & (x < 5)).all()


def test_masked_loss_exact_posterior_reaches_entropy_rate(small_domain):
    d = small_domain
    fam = MaskedDiffusion(d.vocab_size, d.length)
    x = d.pretraining_data(3000, gen(6))
    exact = fam.loss(ChainPosteriorDenoiser(d), x, gen(7))
    random = fam.loss(tiny_denoiser(d.vocab_size, d.length, 0), x, gen(7))
    assert torch.isfinite(exact) and torch.isfinite(random)
    assert exact.dim() == 0
    # The any-order bound is tight for the true conditionals: loss ~ entropy per position.
    trans = d.function.transition_matrix.double()
    pi = d.function.stationary_dist.squeeze(-1).double()
    ent = lambda p: -(p * p.clamp_min(1e-300).log()).sum(-1)  # noqa: E731
    rate = (ent(pi) + (d.length - 1) * (pi * ent(trans)).sum()) / d.length
    assert abs(exact.item() - rate.item()) < 0.05, (exact.item(), rate.item())
    assert random.item() > exact.item() + 0.5
    # The loss trains: it has gradients for every denoiser parameter that takes part.
    model = tiny_denoiser(d.vocab_size, d.length, 1).train()
    fam.loss(model, x[:64], gen(8)).backward()
    assert model.head.weight.grad.abs().sum() > 0 and model.pos.grad.abs().sum() > 0


# ---------------------------------------------------------------- the key test: exact sampler


def test_exact_posterior_sampler_small_domain(small_domain):
    d = small_domain
    fam = MaskedDiffusion(d.vocab_size, d.length, num_steps=d.length)
    n = 2000
    x = sample(ChainPosteriorDenoiser(d), fam, n, gen(10))
    assert x.shape == (n, d.length)
    assert d.is_feasible(x).all(), f"{(~d.is_feasible(x)).sum()} infeasible samples"
    pi = d.function.stationary_dist.squeeze(-1).double()
    tol = 4 * (pi * (1 - pi) / n).sqrt() + 0.005
    first = torch.bincount(x[:, 0], minlength=d.vocab_size).double() / n
    assert ((first - pi).abs() < tol).all(), (first, pi)
    pooled = torch.bincount(x.flatten(), minlength=d.vocab_size).double() / x.numel()
    assert ((pooled - pi).abs() < tol).all(), (pooled, pi)
    # Pair statistics: transition frequencies out of the most frequent state follow the chain.
    trans = d.function.transition_matrix.double()
    a = int(pi.argmax())
    prev, nxt = x[:, :-1].flatten(), x[:, 1:].flatten()
    counts = torch.bincount(nxt[prev == a], minlength=d.vocab_size).double()
    emp = counts / counts.sum()
    assert ((emp - trans[a]).abs() < 4 * (trans[a] * (1 - trans[a]) / counts.sum()).sqrt() + 0.005).all()


def test_exact_posterior_sampler_default_domain(default_domain):
    d = default_domain
    assert (d.vocab_size, d.length) == (32, 32)
    fam = MaskedDiffusion(d.vocab_size, d.length)
    x = sample(ChainPosteriorDenoiser(d), fam, 200, gen(11))
    assert d.is_feasible(x).all()


def test_random_denoiser_is_mostly_infeasible(default_domain):
    d = default_domain
    fam = MaskedDiffusion(d.vocab_size, d.length)
    x = sample(tiny_denoiser(d.vocab_size, d.length, 0), fam, 200, gen(12))
    assert d.is_feasible(x).float().mean() < 0.5


def test_trajectory_log_probs_of_exact_sampler_are_chain_likelihood(small_domain):
    d = small_domain
    fam = MaskedDiffusion(d.vocab_size, d.length)
    traj = sample(ChainPosteriorDenoiser(d), fam, 200, gen(13), trajectory=True)
    # One position per step: the sum of step log-probs is log p(x) by the chain rule, any order.
    torch.testing.assert_close(traj.log_probs.sum(0).double(), chain_log_likelihood(d, traj.final),
                               atol=1e-3, rtol=1e-4)


# ---------------------------------------------------------------- trajectories


def test_trajectory_log_probs_recompute_and_kl():
    fam = MaskedDiffusion(5, 7, 4)
    model = tiny_denoiser(5, 7, 0)
    other = tiny_denoiser(5, 7, 1)
    traj = sample(model, fam, 16, gen(14), trajectory=True)
    assert len(traj.states) == fam.num_steps + 1 and len(traj.selections) == fam.num_steps
    assert traj.log_probs.shape == (fam.num_steps, 16)
    assert torch.equal(traj.final, traj.states[-1])
    assert (traj.log_probs < 0).all()
    # Same draw as without trajectory.
    assert torch.equal(sample(model, fam, 16, gen(14)), traj.final)
    lp, kl = trajectory_log_probs(model, fam, traj, {"same": copy.deepcopy(model), "other": other})
    torch.testing.assert_close(lp, traj.log_probs, atol=1e-5, rtol=0)
    assert set(kl) == {"same", "other"}
    assert kl["same"].shape == kl["other"].shape == (fam.num_steps, 16)
    torch.testing.assert_close(kl["same"], torch.zeros_like(kl["same"]), atol=1e-5, rtol=0)
    assert (kl["other"] > 0).all()
    # A different model gives different log-probs for the same transitions.
    lp_other, none = trajectory_log_probs(other, fam, traj)
    assert none == {} and not torch.allclose(lp_other, lp, atol=1e-3)
    # Gradients flow to the model through recomputed log-probs.
    model.train()
    lp, _ = trajectory_log_probs(model, fam, traj)
    lp.sum().backward()
    assert model.head.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- relaxed rollouts


class Recorder(nn.Module):
    """Wraps a denoiser and keeps each call's output, to see which calls receive gradient."""

    def __init__(self, model):
        super().__init__()
        self.model, self.outputs = model, []

    def forward(self, x, t):
        out = self.model(x, t)
        if out.requires_grad:
            out.retain_grad()
        self.outputs.append(out)
        return out


def test_relaxed_rollout_final_is_one_hot():
    fam = MaskedDiffusion(5, 7, 3)
    model = tiny_denoiser(5, 7, 0)
    ro = relaxed_rollout(model, fam, 10, {}, gen(15))
    assert ro.final.shape == (10, 7, 6) and ro.kl == {}
    assert torch.equal(ro.final[..., -1], torch.zeros(10, 7))
    torch.testing.assert_close(ro.final, ro.final.round(), atol=1e-6, rtol=0)
    assert torch.equal(ro.final.round().sum(-1), torch.ones(10, 7))
    assert torch.equal(fam.to_tokens(ro.final), ro.final[..., :5].argmax(-1))
    assert not fam.is_masked(ro.final).any()


def test_relaxed_rollout_of_exact_posterior_is_feasible(small_domain):
    d = small_domain
    fam = MaskedDiffusion(d.vocab_size, d.length)
    ro = relaxed_rollout(ChainPosteriorDenoiser(d), fam, 300, {}, gen(16), use_checkpoint=False)
    assert d.is_feasible(fam.to_tokens(ro.final)).all()


@pytest.mark.parametrize("grad_steps", [1, 2, 4])
def test_relaxed_rollout_truncation_counts_steps(grad_steps):
    """With grad_steps=K exactly the last K denoiser calls get gradient from the final state."""
    fam = MaskedDiffusion(4, 6, 4)
    rec = Recorder(tiny_denoiser(4, 6, 0).train())
    ro = relaxed_rollout(rec, fam, 8, {}, gen(17), grad_steps=grad_steps, use_checkpoint=False)
    w = torch.randn(ro.final.shape, generator=gen(18))
    (ro.final * w).sum().backward()
    got = [int(o.grad is not None and o.grad.abs().sum() > 0) for o in rec.outputs]
    assert got == [0] * (fam.num_steps - grad_steps) + [1] * grad_steps
    grads = [p.grad for p in rec.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_relaxed_rollout_gradients_and_kl():
    fam = MaskedDiffusion(4, 6, 6)
    model = tiny_denoiser(4, 6, 0).train()
    refs = {"copy": copy.deepcopy(model).eval().requires_grad_(False), "other": tiny_denoiser(4, 6, 1)}
    for grad_steps in [1, None]:
        model.zero_grad()
        ro = relaxed_rollout(model, fam, 8, refs, gen(19), grad_steps=grad_steps)
        assert set(ro.kl) == {"copy", "other"}
        for v in ro.kl.values():
            assert v.shape == (8,) and (v >= -1e-6).all()
        torch.testing.assert_close(ro.kl["copy"], torch.zeros(8), atol=1e-5, rtol=0)
        assert (ro.kl["other"] > 0.01).all()
        (ro.final[..., 0].sum() + ro.kl["other"].sum()).backward()
        norm = sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None)
        assert norm > 0
        assert model.head.weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in refs["other"].parameters())
    # The KL to the copy has zero value and zero gradient; checkpointing changes nothing.
    grads = {}
    for ckpt in [True, False]:
        model.zero_grad()
        ro = relaxed_rollout(model, fam, 8, refs, gen(20), use_checkpoint=ckpt)
        (ro.final[..., 1].sum() + ro.kl["other"].mean()).backward()
        grads[ckpt] = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- Gaussian diffusion


@pytest.fixture(scope="module")
def gaussian_model():
    """An MLP denoiser pretrained on N([2, -1], diag(0.5, 0.3)^2)."""
    fam = GaussianDiffusion((2,), num_steps=100, beta_end=0.1)
    torch.manual_seed(0)
    model = MLPDenoiser(2, hidden=64, num_steps=fam.num_steps)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(21)
    mean, std = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.3])
    losses = []
    for _ in range(500):
        x0 = mean + std * torch.randn(256, 2, generator=g)
        loss = fam.loss(model, x0, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return fam, model.eval(), mean, std, losses


def test_gaussian_schedule_reaches_noise():
    fam = GaussianDiffusion((2,), num_steps=100, beta_end=0.1)
    assert fam.alpha_bars[-1] < 0.01  # so the N(0, I) prior is the forward chain's end
    assert fam.betas.shape == (100,) and (fam.betas > 0).all() and (fam.betas < 1).all()
    with pytest.raises(ValueError):
        GaussianDiffusion((2,), num_steps=0)


def test_gaussian_pretraining_matches_data(gaussian_model):
    fam, model, mean, std, losses = gaussian_model
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-50:]) / 50 < 0.8 * sum(losses[:50]) / 50
    x = sample(model, fam, 4000, gen(22))
    assert x.shape == (4000, 2)
    torch.testing.assert_close(x.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(x.std(0), std, atol=0.1, rtol=0)
    # An untrained denoiser does not get there.
    torch.manual_seed(5)
    raw = sample(MLPDenoiser(2, hidden=64), fam, 1000, gen(22))
    assert (raw.mean(0) - mean).abs().max() > 0.5


def test_gaussian_step_kl_between_models(gaussian_model):
    fam, model, _, _, _ = gaussian_model
    torch.manual_seed(6)
    untrained = MLPDenoiser(2, hidden=64)
    traj = sample(model, fam, 32, gen(23), trajectory=True)
    assert traj.log_probs.shape == (fam.num_steps, 32) and all(s is None for s in traj.selections)
    lp, kl = trajectory_log_probs(model, fam, traj, {"copy": copy.deepcopy(model), "untrained": untrained})
    torch.testing.assert_close(lp, traj.log_probs, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(kl["copy"], torch.zeros_like(kl["copy"]), atol=1e-6, rtol=0)
    assert (kl["untrained"].sum(0) > 0.1).all()
    # One step by hand: equal variances, so KL = ||mu - mu_ref||^2 / (2 beta_t).
    step, state = 10, traj.states[10]
    time = fam.model_time(step, 32)
    with torch.no_grad():
        a = fam.transition(model(state, time), state, step, None)
        b = fam.transition(untrained(state, time), state, step, None)
    assert isinstance(a, GaussianStep)
    beta = fam.betas[fam.num_steps - 1 - step]
    torch.testing.assert_close(a.kl(b), ((a.mean - b.mean) ** 2).sum(-1) / (2 * beta), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(kl["untrained"][step], a.kl(b), rtol=1e-4, atol=1e-6)


def test_gaussian_relaxed_rollout_differentiable(gaussian_model):
    fam, model, _, _, _ = gaussian_model
    model = copy.deepcopy(model).train()
    ro = relaxed_rollout(model, fam, 16, {"copy": copy.deepcopy(model)}, gen(24), grad_steps=3)
    assert ro.final.shape == (16, 2)
    torch.testing.assert_close(ro.kl["copy"], torch.zeros(16), atol=1e-6, rtol=0)
    ro.final.sum().backward()
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0
