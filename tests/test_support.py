"""The support constraint: fine-tuned policies only put mass where the pretrained model does."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from seiko.api import compose, run
from seiko.checkpoint import CheckpointError, load_policy, save_policy
from seiko.config import ConfigError
from seiko.diffusion import MaskedDiffusion, SequenceDenoiser, SupportConstrained, relaxed_rollout, sample
from seiko.diffusion.support import MASKED_LOGIT
from seiko.domains.protein import ChainPosteriorDenoiser, ProteinDomain
from helpers import gen


class Fixed(nn.Module):
    """A denoiser with the same logits at every position: log of ``probs``."""

    def __init__(self, probs):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(probs).log())

    def forward(self, x, t):
        return self.logits.expand(*x.shape[:2], -1)


def test_masks_exactly_the_tokens_below_eps_but_never_the_reference_mode():
    policy = Fixed([0.1, 0.2, 0.3, 0.4])
    state, time = torch.zeros(2, 5, dtype=torch.long), torch.zeros(2)
    out = SupportConstrained(policy, Fixed([0.001, 0.5, 0.019, 0.48]), eps=0.02)(state, time)
    assert out.shape == (2, 5, 4)
    assert (out[..., [0, 2]] == MASKED_LOGIT).all()
    torch.testing.assert_close(out[..., [1, 3]], policy(state, time)[..., [1, 3]])
    # a reference below eps everywhere keeps its most likely token
    flat = SupportConstrained(policy, Fixed([0.2, 0.2, 0.2, 0.4]), eps=0.5)(state, time)
    assert (flat[..., :3] == MASKED_LOGIT).all() and (flat[..., 3] > MASKED_LOGIT).all()


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1])
def test_eps_must_be_a_probability(eps):
    with pytest.raises(ValueError, match="eps"):
        SupportConstrained(Fixed([0.5, 0.5]), Fixed([0.5, 0.5]), eps)


def test_random_policy_inside_the_chain_support_is_always_feasible():
    """A random network alone is mostly infeasible (test_sampler); masked by the exact chain
    posterior, whose support is exactly the feasible completions, it never breaks a transition."""
    domain = ProteinDomain()
    family = MaskedDiffusion(domain.vocab_size, domain.length)
    torch.manual_seed(0)
    policy = SequenceDenoiser(domain.vocab_size, domain.length, d_model=32, num_layers=1, num_heads=2).eval()
    free = sample(policy, family, 200, gen(1))
    constrained = sample(SupportConstrained(policy, ChainPosteriorDenoiser(domain), 1e-6), family, 200, gen(1))
    assert domain.is_feasible(free).float().mean() < 0.5
    assert domain.is_feasible(constrained).all()


def test_gradients_reach_the_policy_not_the_reference():
    domain = ProteinDomain(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3)
    family = MaskedDiffusion(domain.vocab_size, domain.length)
    torch.manual_seed(0)
    net = lambda: SequenceDenoiser(8, 12, d_model=16, num_layers=1, num_heads=2)  # noqa: E731
    model = SupportConstrained(net(), net(), 0.05).train()
    assert not model.reference.training
    rollout = relaxed_rollout(model, family, 4, {}, gen(2), use_checkpoint=False)
    rollout.final[..., :-1].sum().backward()  # any function of the relaxed design
    assert all(p.grad is None for p in model.reference.parameters())
    assert sum(p.grad.abs().sum() for p in model.policy.parameters() if p.grad is not None) > 0


def test_checkpoint_rebuilds_the_constrained_policy(tmp_path):
    inner = {"_target_": "seiko.diffusion.SequenceDenoiser", "vocab_size": 8, "length": 12, "d_model": 16,
             "num_layers": 1, "num_heads": 2}
    spec = {"denoiser": {"_target_": "seiko.diffusion.SupportConstrained", "policy": inner, "reference": inner,
                         "eps": 0.05},
            "family": {"_target_": "seiko.diffusion.MaskedDiffusion", "vocab_size": 8, "length": 12}}
    torch.manual_seed(0)
    model = SupportConstrained(SequenceDenoiser(8, 12, d_model=16, num_layers=1, num_heads=2),
                               SequenceDenoiser(8, 12, d_model=16, num_layers=1, num_heads=2), 0.05).eval()
    path = save_policy(tmp_path / "round_0.safetensors", model, spec)
    loaded, family, _ = load_policy(path)
    assert isinstance(loaded, SupportConstrained) and loaded.eps == 0.05
    state, time = torch.full((3, 12), 8), torch.zeros(3)
    torch.testing.assert_close(loaded.eval()(state, time), model(state, time))
    # a foreign class nested inside a seiko wrapper is refused too
    bad = dict(spec, denoiser=dict(spec["denoiser"], reference={"_target_": "os.system", "command": "true"}))
    path = save_policy(tmp_path / "bad.safetensors", model, bad)
    with pytest.raises(CheckpointError, match="os.system"):
        load_policy(path)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "1"])
def test_bad_support_eps_is_one_line_naming_the_field(value, tiny):
    with pytest.raises(ConfigError, match=r"^finetune\.support_eps"):
        compose(tiny + [f"finetune.support_eps={value}"])


def test_a_run_with_the_support_constraint_saves_constrained_rounds(tiny, tmp_path):
    summary = run(compose(tiny + ["strategy=greedy", "finetune.support_eps=0.01"]), tmp_path)
    assert summary["status"] == "finished" and summary["rounds"] == 2
    policy, _, spec = load_policy(tmp_path / "checkpoints" / "round_1.safetensors")
    assert isinstance(policy, SupportConstrained) and math.isclose(policy.eps, 0.01)
    assert spec["denoiser"]["policy"] == spec["denoiser"]["reference"]


def test_support_needs_categorical_diffusion(tiny):
    from seiko.build import constrain_support
    from seiko.diffusion import GaussianDiffusion, MLPDenoiser

    cfg = compose(tiny + ["finetune.support_eps=0.01"])
    with pytest.raises(ConfigError, match=r"^finetune\.support_eps.*GaussianDiffusion"):
        constrain_support(cfg, MLPDenoiser(4), GaussianDiffusion((4,), num_steps=5), {"denoiser": {}})


def _references(eps=0.05):
    """A trained-looking policy, and the pretrained and previous-round KL references built as
    the fine-tuners build them: frozen deep copies of constrained wrappers."""
    from seiko.finetune.base import frozen

    torch.manual_seed(0)
    net = lambda: SequenceDenoiser(8, 12, d_model=16, num_layers=1, num_heads=2)  # noqa: E731
    pretrained_net = net()
    pretrained = SupportConstrained(pretrained_net, copy.deepcopy(pretrained_net), eps)
    policy = copy.deepcopy(pretrained)

    def step_away():  # as a round of fine-tuning moves the policy
        with torch.no_grad():
            for p in policy.policy.parameters():
                p.add_(0.3 * torch.randn_like(p))

    step_away()
    previous = frozen(policy)
    step_away()
    return policy.train(), frozen(pretrained), previous


def _plain(wrapper, state, time):
    """The constrained logits computed the obvious way, two forwards and no memo."""
    log_p = torch.log_softmax(wrapper.reference(state, time).float(), -1)
    outside = (log_p < math.log(wrapper.eps)) & (log_p < log_p.amax(-1, keepdim=True))
    return wrapper.policy(state, time).masked_fill(outside, MASKED_LOGIT)


def test_one_reference_forward_per_step_gives_the_same_kls_as_plain_masking():
    """The policy and both KL references share the pretrained weights' forward at each step; the
    per-step KLs equal those of masking each model on its own."""
    family = MaskedDiffusion(8, 12)
    policy, pretrained, previous = _references()
    calls = []
    for wrapper in (policy, pretrained, previous):
        wrapper.reference.register_forward_hook(lambda *args: calls.append(1))
    pretrained.policy.register_forward_hook(lambda *args: calls.append("pretrained policy"))
    rollout = relaxed_rollout(policy, family, 6, {"pretrained": pretrained, "previous": previous}, gen(3),
                              grad_steps=0, use_checkpoint=False)
    assert len(calls) == family.num_steps  # not 3 per step, and none of the pretrained copy
    plain = {name: torch.zeros(6) for name in ("pretrained", "previous")}
    state, generator = family.relax(family.prior(6, gen(3))), gen(3)
    family.prior(6, generator)  # the same draws as the rollout from here on
    with torch.no_grad():
        for step in range(family.num_steps):
            sel = family.selection(state, step, generator)
            time = family.model_time(step, 6)
            dist = family.transition(_plain(policy, state, time), state, step, sel)
            for name, ref in (("pretrained", pretrained), ("previous", previous)):
                plain[name] += dist.kl(family.transition(_plain(ref, state, time), state, step, sel))
            state = family.advance_relaxed(dist, state, 1.0, generator)
    for name in plain:
        torch.testing.assert_close(rollout.kl[name], plain[name], rtol=1e-4, atol=1e-4)
    assert (rollout.kl["previous"] > 0).all() and (rollout.kl["pretrained"] > 0).all()


def test_the_memo_never_serves_a_changed_state_or_reference():
    policy, pretrained, _ = _references(eps=0.2)
    policy.eval()
    state, time = torch.full((3, 12), 8), torch.zeros(3)
    state[:, :4] = torch.arange(4)
    torch.testing.assert_close(policy(state, time), _plain(policy, state, time))
    state[:, 4:8] = 5  # in place: a new version of the same storage
    torch.testing.assert_close(policy(state, time), _plain(policy, state, time))
    # new reference weights loaded through the wrapper (as a round's checkpoint is): new digest
    other = SequenceDenoiser(8, 12, d_model=16, num_layers=1, num_heads=2)
    policy.load_state_dict({**policy.state_dict(), **{f"reference.{k}": v for k, v in other.state_dict().items()}})
    torch.testing.assert_close(policy(state, time), _plain(policy, state, time))
    assert not torch.equal(policy(state, time), pretrained(state, time))
