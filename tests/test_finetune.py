"""Fine-tuners: backprop through the chain and PPO move a tiny model towards token 0; KL holds it back."""

import copy
import logging

import lightning as L
import pytest
import torch
from torch import nn

from seiko.diffusion import MaskedDiffusion, SequenceDenoiser, sample, trajectory_log_probs
from seiko.finetune import BackpropFinetuner, PPOFinetuner, frozen

V, LENGTH = 4, 6
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    level = logging.getLogger("lightning.pytorch").level
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(n)
    logging.getLogger("lightning.pytorch").setLevel(level)


def trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


@pytest.fixture(scope="module")
def family():
    return MaskedDiffusion(V, LENGTH)


@pytest.fixture(scope="module")
def base():
    """Tiny random denoiser with a zero head: uniform over the 4 tokens, so P(token 0) = 0.25."""
    torch.manual_seed(0)
    model = SequenceDenoiser(V, LENGTH, d_model=32, num_layers=1, num_heads=2, conv_kernel=3)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


def frac_zero(model, family, n=2000) -> float:
    was = model.training
    model.eval()
    x = sample(model, family, n, torch.Generator().manual_seed(123))
    model.train(was)
    return (x == 0).float().mean().item()


def count_zero_soft(features: torch.Tensor) -> torch.Tensor:
    """Number of token-0 positions from soft one-hots [B, L, V]; differentiable."""
    return features[..., 0].sum(-1)


def count_zero_hard(tokens: torch.Tensor) -> torch.Tensor:
    return (tokens == 0).sum(-1).float()


def backprop(base, family, **kwargs):
    model = copy.deepcopy(base).train()
    args = dict(kl_pretrained=0.0, kl_previous=0.0, lr=1e-2, batch_size=32, steps=30, seed=0,
                objective=count_zero_soft, features=lambda x: x)
    args.update(kwargs)
    ft = BackpropFinetuner(model, family, base, None, **args)
    trainer().fit(ft)
    return model, ft


def test_base_is_uniform(base, family):
    assert abs(frac_zero(base, family) - 0.25) < 0.03


def test_backprop_raises_token_zero(base, family):
    model, ft = backprop(base, family)
    after = frac_zero(model, family)
    assert after > 0.6, after
    # The reference is frozen and untouched; the KL to it is now clearly positive.
    assert all(not p.requires_grad for p in ft.refs["pretrained"].parameters())
    torch.testing.assert_close(ft.refs["pretrained"].head.weight, base.head.weight)
    traj = sample(model.eval(), family, 64, torch.Generator().manual_seed(1), trajectory=True)
    _, kl = trajectory_log_probs(model, family, traj, {"pre": base})
    assert kl["pre"].sum(0).mean() > 0.5


def test_backprop_kl_weight_holds_model_back(base, family):
    free, _ = backprop(base, family)
    held, _ = backprop(base, family, kl_pretrained=10.0)
    before = frac_zero(base, family)
    d_free = frac_zero(free, family) - before
    d_held = frac_zero(held, family) - before
    assert d_free > 0.35
    # Optimum of E[r] - 10 KL tilts each position by exp(1/10): P(0) ~ 0.27.
    assert d_held < 0.3 * d_free, (d_held, d_free)
    assert abs(d_held) < 0.1


def test_backprop_fixed_truncation_and_no_checkpointing(base, family):
    model, _ = backprop(base, family, truncation=2, gradient_checkpointing=False, steps=15)
    assert frac_zero(model, family) > 0.6


def test_ppo_raises_token_zero(base, family):
    model = copy.deepcopy(base).train()
    ft = PPOFinetuner(model, family, base, None, kl_pretrained=0.0, kl_previous=0.0, lr=1e-2, batch_size=64,
                      steps=15, seed=0, reward=count_zero_hard, ppo_epochs=2)
    trainer().fit(ft)
    after = frac_zero(model, family)
    assert after > 0.5, after


def test_ppo_with_fixed_rollouts(base, family):
    """Online-PPO mode: given trajectories and their labels, no reward function."""
    gen = torch.Generator().manual_seed(3)
    rollouts = [sample(base.eval(), family, 64, gen, trajectory=True) for _ in range(8)]
    rewards = [count_zero_hard(t.final) for t in rollouts]
    model = copy.deepcopy(base).train()
    ft = PPOFinetuner(model, family, base, None, kl_pretrained=0.0, kl_previous=0.0, lr=1e-2, batch_size=64,
                      rollouts=rollouts, rewards=rewards, ppo_epochs=2)
    assert ft.steps == 8
    trainer().fit(ft)
    assert frac_zero(model, family) > 0.3


@pytest.mark.parametrize("cls,extra", [
    (BackpropFinetuner, dict(objective=count_zero_soft, features=lambda x: x)),
    (PPOFinetuner, dict(reward=count_zero_hard)),
])
@pytest.mark.parametrize("weights", [dict(kl_pretrained=-1.0), dict(kl_previous=-0.01)])
def test_negative_kl_weight_raises(base, family, cls, extra, weights):
    with pytest.raises(ValueError, match="kl_"):
        cls(copy.deepcopy(base), family, base, base, **weights, **extra)


@pytest.mark.parametrize("truncation", ["bad", 0, -3, 1.5])
def test_bad_truncation_raises(base, family, truncation):
    with pytest.raises(ValueError, match="truncation"):
        BackpropFinetuner(copy.deepcopy(base), family, base, None, truncation=truncation,
                          objective=count_zero_soft, features=lambda x: x)


def test_ppo_needs_exactly_one_reward_source(base, family):
    with pytest.raises(ValueError):
        PPOFinetuner(copy.deepcopy(base), family, base, None)
    traj = sample(base, family, 4, torch.Generator().manual_seed(0), trajectory=True)
    with pytest.raises(ValueError):
        PPOFinetuner(copy.deepcopy(base), family, base, None, reward=count_zero_hard, rollouts=[traj],
                     rewards=[torch.zeros(4)])


def test_refs_and_weights(base, family):
    ft = BackpropFinetuner(copy.deepcopy(base), family, base, base, kl_pretrained=0.5, kl_previous=0.2,
                           objective=count_zero_soft, features=lambda x: x)
    assert set(ft.refs) == {"pretrained", "previous"}
    penalty = ft.kl_penalty({"pretrained": torch.tensor([1.0, 3.0]), "previous": torch.tensor([4.0, 6.0])})
    torch.testing.assert_close(penalty, torch.tensor(0.5 * 2.0 + 0.2 * 5.0))
    # A previous model with zero weight is not kept as a reference.
    ft = BackpropFinetuner(copy.deepcopy(base), family, base, base, kl_previous=0.0,
                           objective=count_zero_soft, features=lambda x: x)
    assert set(ft.refs) == {"pretrained"}
    ref = frozen(base)
    assert ref is not base and not ref.training and all(not p.requires_grad for p in ref.parameters())


def test_a_fill_rollout_enters_the_chain_at_its_masks_and_keeps_the_rest(base, family):
    """relaxed_rollout(start=...) re-draws exactly the masked positions; its KL covers only those steps."""
    from seiko.diffusion.sampler import relaxed_rollout

    tokens = torch.tensor([[1, 2, 3, 1, 2, 3], [3, 3, 2, 2, 1, 1]])
    start = tokens.clone()
    start[0, [1, 4]] = family.mask_id
    start[1, [0, 5]] = family.mask_id
    assert family.entry_step(start) == LENGTH - 2
    shifted = copy.deepcopy(base)
    nn.init.normal_(shifted.head.bias)  # a policy away from the reference: non-zero KL per step
    out = relaxed_rollout(shifted, family, 2, {"pretrained": base}, torch.Generator().manual_seed(0), start=start)
    final = family.to_tokens(out.final)
    kept = start != family.mask_id
    assert torch.equal(final[kept], tokens[kept]) and not (final == family.mask_id).any()
    full = relaxed_rollout(shifted, family, 2, {"pretrained": base}, torch.Generator().manual_seed(0))
    assert (out.kl["pretrained"] > 0).all() and (out.kl["pretrained"] < full.kl["pretrained"]).all()
    with pytest.raises(ValueError, match="same number"):
        family.entry_step(torch.tensor([[family.mask_id, 1, 1, 1, 1, 1], [family.mask_id, family.mask_id, 1, 1, 1, 1]]))


def test_fill_rollouts_train_the_fills_of_the_best_labels(base, family):
    """finetune.fills=1: every rollout re-masks one of the best labelled designs and the policy is
    rewarded for its fill, so the fills of those designs move towards token 0 (fresh samples are
    never drawn); fills=0 ignores the labels and trains as before."""
    from seiko.infill import InfillMoves

    designs = torch.tensor([[1, 2, 3, 1, 2, 3], [2, 2, 2, 2, 2, 2], [3, 1, 3, 1, 3, 1]])
    labels = torch.tensor([0.5, float("nan"), 0.2])
    ft_args = dict(steps=30, fills=1.0, fill_starts=1, fill_masked=3, fill_span=0.5, labelled=(designs, labels))
    model, ft = backprop(base, family, **ft_args)
    assert torch.equal(ft.starts, designs[:1])  # the best feasible one
    moves = InfillMoves(candidates=1, masked=3)
    before = moves.fills(base.eval(), family, designs[:1], 400, torch.Generator().manual_seed(1))
    after = moves.fills(model.eval(), family, designs[:1], 400, torch.Generator().manual_seed(1))
    assert (after == 0).float().mean() > (before == 0).float().mean() + 0.1
    plain, _ = backprop(base, family)
    same, ft0 = backprop(base, family, labelled=(designs, labels))
    assert ft0.starts is None
    for a, b in zip(plain.parameters(), same.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="finetune.fills"):
        BackpropFinetuner(copy.deepcopy(base), family, base, None, fills=1.5, objective=count_zero_soft,
                          features=lambda x: x)
