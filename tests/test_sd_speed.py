"""experiments/sd_speed.py in --tiny mode: both paths run and are timed, and seiko's fine-tuning
step (PromptedUNet + DDIMDiffusion + relaxed_rollout + ImageDomain.features) computes the same
loss and the same LoRA gradients as the plain diffusers + peft loop (two full frozen UNet copies
as the KL references, DDIM by hand), from the same weights and the same noise."""
from __future__ import annotations

import json

import pytest

from helpers import experiment_script


def load_script():
    return experiment_script("sd_speed")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("sd_speed") / "results.json"
    returned = load_script().main(["--tiny", "--device", "cpu", "--repeats", "1", "--warmup", "0", "--steps", "6",
                                   "--grad-steps", "3", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["paths"].keys() == returned["paths"].keys()
    return written


def test_both_paths_are_timed_with_positive_times(result):
    assert set(result["paths"]) == {"seiko", "plain"}
    for name, r in result["paths"].items():
        assert r["step_s_median"] > 0 and r["sample_s_median"] > 0, name
        assert len(r["step_s"]) == 1 and r["peak_step_mib"] > 0, name
    assert result["settings"]["steps"] == 6 and result["settings"]["grad_steps"] == 3
    assert set(result["ratios"]) == {"step", "sample"}
    assert "RSS" in result["memory"]  # on CPU the memory figure is the process's peak RSS, and says so
    assert "| seiko |" in result["table"] and "| plain |" in result["table"]


def test_seiko_step_and_plain_loop_agree_on_loss_and_lora_gradients(result):
    check = result["check"]
    seiko, plain = check["seiko"], check["plain"]
    # both KL terms are nonzero (the adapter differs from the pretrained UNet and from the
    # previous round's snapshot), so their gradients are compared too, not only the reward's
    for key in ("kl_pretrained", "kl_previous"):
        assert seiko[key] > 0
        assert seiko[key] == pytest.approx(plain[key], rel=1e-4)
    assert seiko["reward"] == pytest.approx(plain["reward"], rel=1e-5, abs=1e-6)
    assert check["loss_abs_diff"] < 1e-4
    assert check["lora_tensors"] > 0 and check["grad_max_abs"] > 0
    assert check["grad_max_rel_diff"] < 1e-4  # max |g_seiko - g_plain| / max |g_plain|, fp32 on CPU
    assert check["grad_norm_seiko"] == pytest.approx(check["grad_norm_plain"], rel=1e-4)
