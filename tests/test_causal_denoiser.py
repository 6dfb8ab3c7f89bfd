"""The causal denoiser and the autoregressive case of masked diffusion (molecules' default)."""
import pytest
import torch

from seiko.diffusion import MaskedDiffusion, SequenceDenoiser


def _model(length=12, vocab=7):
    torch.manual_seed(0)
    return SequenceDenoiser(vocab, length, d_model=32, num_layers=2, num_heads=4, conv_kernel=5, causal=True).eval()


def test_output_at_j_reads_only_positions_before_j():
    model, x = _model(), torch.randint(0, 7, (3, 12))
    for j in (0, 5, 11):
        y = x.clone()
        y[:, j:] = torch.randint(0, 8, y[:, j:].shape)  # anything, the mask id included
        with torch.no_grad():
            torch.testing.assert_close(model(x)[:, : j + 1], model(y)[:, : j + 1])
    with torch.no_grad():  # and it does read the prefix
        assert not torch.allclose(model(x)[:, 6], model(torch.cat([x[:, :5].flip(0), x[:, 5:]], 1))[:, 6])


def test_teacher_forced_loss_is_the_left_to_right_chain_likelihood():
    model, x0 = _model(), torch.randint(0, 7, (4, 12))
    family = MaskedDiffusion(7, 12, order="left_to_right", causal=True)
    with torch.no_grad():
        loss = family.loss(model, x0)
        logp = torch.zeros(4)
        for k in range(12):  # the sampler's state before step k: positions >= k masked
            state = x0.clone()
            state[:, k:] = family.mask_id
            logp += model(state)[:, k].log_softmax(-1).gather(-1, x0[:, k:k + 1]).squeeze(-1)
    torch.testing.assert_close(loss, -logp.mean() / 12)


def test_causal_needs_left_to_right():
    with pytest.raises(ValueError, match="domain.family.causal"):
        MaskedDiffusion(7, 12, order="random", causal=True)


def test_fills_run_left_to_right_and_keep_the_rest():
    model, family = _model(), MaskedDiffusion(7, 12, order="left_to_right", causal=True)
    tokens = torch.randint(0, 7, (5, 12))
    masks = torch.zeros(5, 12, dtype=torch.bool)
    masks[:, 3:6] = True
    masks[:, 9] = True
    filled = family.infill(model, tokens, masks, torch.Generator().manual_seed(0))
    assert (filled[~masks] == tokens[~masks]).all() and (filled < 7).all()
    # each fill reads only what lies before it: new tokens after position 9 change no fill
    right = tokens.clone()
    right[:, 10:] = (tokens[:, 10:] + 1) % 7
    again = family.infill(model, right, masks, torch.Generator().manual_seed(0))
    assert (again[:, :10] == filled[:, :10]).all()
