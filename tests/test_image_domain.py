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


def test_images_sampled_in_chunks_each_with_its_own_file_and_seed(sd_dir, tmp_path):
    """budget.sample_chunk on images: every chunk writes its PNGs, and no seed (so no image) repeats."""
    run(compose(tiny_image(sd_dir, "strategy=ucb", "budget.sample_chunk=4")), tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        records = [ImageRecord.from_text(q.design) for q in ledger.queries(labelled=True)]
        assert len(records) == 12 and ledger.completed_rounds() == [0, 1]
    assert all((tmp_path / r.image).is_file() for r in records)
    assert len({r.seed for r in records}) == 12


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


def test_resume_continues_from_the_last_rounds_adapter_not_the_base_model(sd_dir, tmp_path):
    from safetensors.torch import load_file

    from seiko.build import build_loop

    overrides = tiny_image(sd_dir, "strategy=greedy", "budget.per_round=[6,6,6]", "logger=none", "eval.num_samples=0")
    loop = build_loop(compose(overrides), tmp_path)
    loop._restore()
    loop.run_round(0)
    saved = load_file(str(tmp_path / "checkpoints" / "round_0.safetensors"))
    assert any(float(v.abs().max()) > 0 for k, v in saved.items() if "lora_B" in k)  # round 0 trained B away from 0
    resumed = build_loop(compose(overrides + ["resume=true"]), tmp_path)
    assert resumed._restore() == 1
    state = resumed.method.denoiser.checkpoint_state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    # its next KL reference is that adapter too, not the base model
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([300])
    from seiko.diffusion.ddim import Conditioning

    ctx = Conditioning([PROMPTS[0]], [0])
    with torch.no_grad():
        torch.testing.assert_close(resumed.method.previous(x, t, ctx), resumed.method.denoiser(x, t, ctx))
        assert not torch.allclose(resumed.method.pretrained(x, t, ctx), resumed.method.denoiser(x, t, ctx))
    resumed.run()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.completed_rounds() == [0, 1, 2] and len(ledger.queries(labelled=True)) == 18


def test_a_human_rater_labels_exported_pngs_and_the_run_resumes(sd_dir, tmp_path):
    import csv

    from seiko.ledger import Ledger as L
    from seiko.oracles import AwaitingLabels

    overrides = tiny_image(sd_dir, "strategy=ucb", "oracle._target_=seiko.oracles.LabOracle", "eval.num_samples=0",
                           "logger=none")
    with pytest.raises(AwaitingLabels):
        run(compose(overrides), tmp_path)
    sheet = tmp_path / "pending_round_0.csv"
    rows = list(csv.DictReader(sheet.open()))
    assert len(rows) == 6 and {"id", "design", "image", "prompt"} <= set(rows[0])
    for row in rows:
        assert (tmp_path / row["image"]).is_file() and row["prompt"] in PROMPTS  # a PNG a person can open
    labelled = tmp_path / "labels.csv"
    with labelled.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "value"])
        w.writerows([row["id"], 5.0 + i] for i, row in enumerate(rows))
    with L(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.import_labels_csv(labelled) == 6
    with pytest.raises(AwaitingLabels):  # round 0 fits and fine-tunes on the ratings, round 1 is exported
        run(compose(overrides + ["resume=true"]), tmp_path)
    with L(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.completed_rounds() == [0] and len(ledger.pending(1)) == 6
    assert (tmp_path / "pending_round_1.csv").is_file()


def test_seiko_sample_draws_images_for_a_prompt_from_a_saved_round(sd_dir, tmp_path):
    from types import SimpleNamespace

    from seiko.commands import sample

    run(compose(tiny_image(sd_dir, "strategy=greedy", "budget.per_round=[4]", "logger=none", "eval.num_samples=0")),
        tmp_path / "run")
    out = tmp_path / "drawn" / "samples.tsv"
    out.parent.mkdir()
    assert sample(SimpleNamespace(run=str(tmp_path / "run"), round=0, num=3, seed=0, out=str(out),
                                  prompt="a painting of a zebra")) == 0
    lines = out.read_text().splitlines()[1:]
    records = [ImageRecord.from_text(line.split("\t")[0]) for line in lines]
    assert len(records) == 3 and all(r.prompt == "a painting of a zebra" for r in records)
    assert all((out.parent / r.image).is_file() for r in records)


def test_the_papers_experiment_composes_with_its_settings():
    from hydra.utils import instantiate

    cfg = compose(["experiment=aesthetic_sd15"])
    assert list(cfg.budget.per_round) == [1024, 2048, 4096, 8192] and cfg.budget.sample_chunk == 512
    assert cfg.domain.num_steps == 50 and cfg.domain.eta == 1.0 and cfg.domain.guidance_scale == 7.5
    assert cfg.oracle._target_ == "seiko.image.aesthetic.AestheticOracle" and cfg.oracle.noise_std == 0.1
    assert cfg.reward.model.activation == "identity" and cfg.finetune.module.weight_decay == 0.1
    family = instantiate(cfg.domain.family)  # offline: the schedule and the paper's prompts
    assert family.shape == (4, 64, 64) and len(family.timesteps) == 50
    prompts = family.prompts.draw(200, torch.Generator().manual_seed(0), "query")
    assert 10 < sum(p.startswith("A stunning beautiful oil painting") for p in prompts) < 70
    assert cfg.device == "cuda"  # its queries are sampled on the GPU, not where Lightning leaves the policy


def test_sampling_device_is_checked_in_one_line(monkeypatch):
    from seiko.build import sampling_device
    from seiko.config import ConfigError

    assert sampling_device(compose(["domain=image"])) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device=cuda: this machine has no CUDA device"):
        sampling_device(compose(["experiment=aesthetic_sd15"]))
    with pytest.raises(ConfigError, match="device: cpu or cuda"):
        sampling_device(compose(["device=tpu"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sampling_device(compose(["experiment=aesthetic_sd15"])) == "cuda"
    with pytest.raises(ConfigError, match="edits and restarts"):
        sampling_device(compose(["experiment=ehrlich_seiko", "device=cuda"]))


def test_a_records_seed_and_the_policy_that_drew_it_replay_its_whole_trajectory(sd_dir, tmp_path):
    from seiko.build import build_loop
    from seiko.diffusion import sample

    loop = build_loop(compose(tiny_image(sd_dir, "strategy=ucb", "logger=none")), tmp_path)
    policy, family = loop.method.denoiser.eval(), loop.method.family
    drawn = sample(policy, family, 3, torch.Generator().manual_seed(5), trajectory=True)
    records = loop.domain.decode(family.finish(drawn.final, drawn.context))
    replayed = family.trajectory_of(loop.domain.chain_inputs(records), model=policy)
    assert [r for r in replayed.context.prompts] == drawn.context.prompts
    for a, b in zip(replayed.states, drawn.states):  # every state, not only the image
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(replayed.log_probs, drawn.log_probs, atol=1e-3, rtol=1e-5)
    # another seed is another trajectory; another policy replays the same seed elsewhere
    other = family.trajectory_of(family.start(3, torch.Generator().manual_seed(6))[1], model=policy)
    assert not torch.allclose(other.final, drawn.final)
    with pytest.raises(ValueError, match="model="):
        family.trajectory_of(replayed.context)


def test_online_ppo_trains_the_adapter_on_the_replayed_trajectories_of_its_labels(sd_dir, tmp_path):
    from safetensors.torch import load_file

    summary = run(compose(tiny_image(sd_dir, "strategy=online_ppo", "strategy.minibatch=3", "logger=none",
                                     "eval.num_samples=0")), tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.completed_rounds() == [0, 1] and len(ledger.queries(labelled=True)) == 12
    history = summary["history"] if "history" in summary else json.loads((tmp_path / "summary.json").read_text())["history"]
    assert all(np.isfinite(h["finetune/reward"]) and h["finetune/kl_previous"] >= 0 for h in history)
    saved = load_file(str(tmp_path / "checkpoints" / "round_0.safetensors"))
    assert any(float(v.abs().max()) > 0 for k, v in saved.items() if "lora_B" in k)  # PPO moved the adapter
