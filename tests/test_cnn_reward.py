"""The convolutional ensemble: translation invariance, motif recovery at unseen positions, errors."""
import pytest
import torch
import torch.nn.functional as F

from helpers import fit_reward, motif_data
from seiko.reward import EnsembleRewardModel

V, LEN = 4, 16


def cnn(**kw):
    return EnsembleRewardModel(arch="cnn", vocab_size=V, kernel=4, channels=16, hidden=16, batch_size=None,
                               lr=1e-2, **kw)


def test_prediction_does_not_depend_on_where_the_motif_sits():
    x, y = motif_data(40, 0, range(0, 12))
    model = fit_reward(cnn(), x, y, 1)
    tokens = torch.zeros(2, LEN, dtype=torch.long)
    tokens[0, 4], tokens[0, 6], tokens[1, 8], tokens[1, 10] = 1, 2, 1, 2  # the same motif at positions 4 and 8
    h = model.heads(F.one_hot(tokens, V).float().flatten(1))
    torch.testing.assert_close(h[:, 0], h[:, 1])


def test_cnn_recognises_the_motif_where_it_never_saw_it_and_the_mlp_does_not():
    x, y = motif_data(200, 1, range(0, 6))        # motifs seen only in the first positions
    xt, yt = motif_data(100, 2, range(8, 12))     # tested only further along
    err = {}
    for name, model in {"cnn": cnn(), "mlp": EnsembleRewardModel(hidden=32, batch_size=None, lr=1e-2)}.items():
        pred = fit_reward(model, x, y, 150).predict(xt).mean.detach()
        err[name] = (pred - yt).pow(2).mean().sqrt().item()
    assert err["cnn"] < 0.15, err
    assert err["mlp"] > 0.3, err


def test_gradient_reaches_soft_inputs():
    x, y = motif_data(40, 3, range(0, 12))
    model = fit_reward(cnn(), x, y, 5)
    soft = torch.softmax(torch.randn(3, LEN, V), -1).flatten(1).requires_grad_(True)
    model.predict(soft).mean.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_cnn_errors_are_one_line():
    with pytest.raises(ValueError, match="vocab_size"):
        EnsembleRewardModel(arch="cnn")
    with pytest.raises(ValueError, match="arch must be"):
        EnsembleRewardModel(arch="rnn")
    x, y = motif_data(10, 4, range(0, 6))
    with pytest.raises(ValueError, match="longer than the sequences"):
        EnsembleRewardModel(arch="cnn", vocab_size=V, kernel=32).set_data(x, y)
    with pytest.raises(ValueError, match="not a multiple of vocab_size"):
        EnsembleRewardModel(arch="cnn", vocab_size=5).set_data(x, y)


def test_bootstrap_with_the_cnn_ensemble_runs_end_to_end(tiny, tmp_path):
    from seiko.api import compose, run

    cfg = compose(tiny + ["strategy=bootstrap", "reward=cnn", "reward.model.kernel=4"])
    assert cfg.reward.model.vocab_size == 8  # follows the domain
    summary = run(cfg, tmp_path)
    assert summary["status"] == "finished" and summary["queries"] == 32 and summary["rounds"] == 2
    assert summary["final"]["finetune/kl_pretrained"] >= 0
