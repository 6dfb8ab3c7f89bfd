"""The image domain end to end through the loop, the ledger and the CLI's config, on a tiny
Stable Diffusion (UNet, VAE, CLIP text encoder, tokenizer) built in code and saved as a diffusers
folder, with a tiny CLIP image tower under the LAION predictor's layout as the oracle."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seiko.api import compose, run
from seiko.image.components import save_parts, tiny_parts
from seiko.image.records import ImageRecord
from seiko.ledger import Ledger

PROMPTS = ["a photo of a cat", "a photo of a dog", "a painting of a zebra"]


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_sd")
    save_parts(tiny_parts(words=PROMPTS, sample_size=8), path)
    return path


def tiny_image(sd_dir, *extra):
    listed = "[" + ",".join(f"'{p}'" for p in PROMPTS) + "]"
    embedder = "{_target_:seiko.image.clip.ClipImageEmbedder.tiny,image_size:32,embed_dim:32}"
    oracle = ("{_target_:seiko.image.aesthetic.AestheticOracle.from_parts,embedder:" + embedder +
              ",mlp:{_target_:seiko.image.aesthetic.AestheticMLP,input_dim:32},noise_std:0.1,seed:0}")
    return ["domain=image", f"domain.model={sd_dir}", "domain.shape=[4,8,8]", "domain.channels=3",
            "domain.num_steps=4", "domain.guidance_scale=2.0", f"domain.prompts.query={listed}",
            f"domain.prompts.train={listed}", f"domain.prompts.evaluate={listed}",
            "~domain.problem.embedder", f"+domain.problem.embedder={embedder}", "domain.problem.quality=null",
            "~domain.problem.oracle", f"+domain.problem.oracle={oracle}",
            "reward=clip_linear", "reward.max_epochs=5", "budget.per_round=[6,6]", "budget.oracle_batch_size=4",
            "finetune.steps=2", "finetune.batch_size=2", "eval.num_samples=4", "progress=false", "logger=tensorboard",
            *extra]


def test_two_rounds_of_seiko_ucb_on_a_tiny_stable_diffusion(sd_dir, tmp_path):
    cfg = compose(tiny_image(sd_dir, "strategy=ucb"))
    summary = run(cfg, tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        queries = ledger.queries(labelled=True)
        assert len(queries) == 12 and ledger.completed_rounds() == [0, 1]
    records = [ImageRecord.from_text(q.design) for q in queries]
    assert {r.prompt for r in records} <= set(PROMPTS)
    assert all((tmp_path / r.image).is_file() for r in records)  # pixels live in files, the ledger names them
    values = np.array([q.value for q in queries])
    assert np.isfinite(values).all() and values.std() > 0  # noisy aesthetic labels, one per image
    history = summary["history"] if "history" in summary else json.loads((tmp_path / "summary.json").read_text())["history"]
    last = history[-1]
    for key in ("finetune/kl_pretrained", "finetune/kl_previous", "feasibility", "diversity", "eval_reward_mean"):
        assert key in last and np.isfinite(last[key]), key
    assert last["finetune/kl_pretrained"] > 0
    # each round's adapter is saved: the seiko checkpoint (adapter only) and diffusers' LoRA layout
    for r in (0, 1):
        assert (tmp_path / "checkpoints" / f"round_{r}.safetensors").stat().st_size < 500_000
        assert (tmp_path / "checkpoints" / f"round_{r}_lora" / "pytorch_lora_weights.safetensors").is_file()
    tb = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert tb, "TensorBoard events written"


def test_token_baselines_are_refused_for_images_in_one_line(sd_dir, tmp_path):
    from seiko.build import build_loop
    from seiko.config import ConfigError

    for strategy in ("genetic", "holo_ga"):
        with pytest.raises(ConfigError, match=f"strategy={strategy} mutates tokens"):
            build_loop(compose(tiny_image(sd_dir, f"strategy={strategy}")), tmp_path / strategy)
    assert not (tmp_path / "genetic" / "ledger.sqlite").exists()
