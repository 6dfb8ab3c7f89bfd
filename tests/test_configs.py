"""Every config composes and instantiates; bad values fail with one line naming the field."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from seiko.api import compose
from seiko.cli_support import CONFIG_DIR
from seiko.config import ConfigError

GROUPS = {g: sorted(p.stem for p in (CONFIG_DIR / g).glob("*.yaml")) for g in
          ("domain", "strategy", "reward", "finetune", "trainer", "logger")}


@pytest.mark.parametrize("strategy", GROUPS["strategy"])
def test_every_strategy_composes_and_instantiates(strategy, tiny):
    cfg = compose(tiny + [f"strategy={strategy}"])
    assert cfg.strategy.name == strategy
    if cfg.strategy.method == "seiko":
        acquisition = instantiate(cfg.strategy.acquisition)
        assert acquisition.bonus >= 0
    if strategy == "bootstrap":
        assert cfg.reward.name == "ensemble"
    if strategy == "online_ppo":
        assert cfg.finetune.name == "policy_gradient"


@pytest.mark.parametrize("reward", GROUPS["reward"])
def test_every_reward_model_instantiates(reward, tiny):
    model = instantiate(compose(tiny + [f"reward={reward}"]).reward.model)
    assert hasattr(model, "predict") and hasattr(model, "sample_function")


@pytest.mark.parametrize("finetune", GROUPS["finetune"])
def test_every_finetuner_config_is_a_partial(finetune, tiny):
    factory = instantiate(compose(tiny + [f"finetune={finetune}"]).finetune.module)
    assert callable(factory) and factory.keywords["kl_pretrained"] >= 0


@pytest.mark.parametrize("trainer", GROUPS["trainer"])
def test_every_trainer_config_composes(trainer, tiny):
    cfg = compose(tiny + [f"trainer={trainer}"])
    assert cfg.trainer._target_ == "lightning.Trainer"
    if trainer == "cpu":
        assert instantiate(cfg.trainer, logger=False).num_devices == 1
    if trainer == "ddp":
        strategy = instantiate(cfg.trainer.strategy)
        assert strategy._start_method == "spawn"


@pytest.mark.parametrize("trainer", GROUPS["trainer"])
def test_reward_models_fit_without_fsdp(trainer, tiny):
    """FSDP refuses gpytorch's scalar hyperparameters: reward fits use DDP in 32-bit instead."""
    from seiko.sharding import reward_trainer_config

    cfg = compose(tiny + [f"trainer={trainer}"]).trainer
    reward = reward_trainer_config(cfg)
    if trainer == "fsdp":
        assert reward.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
        assert (reward.precision, reward.devices) == ("32-true", cfg.devices)
        assert cfg.strategy._target_.endswith("FSDPStrategy")  # the run's own config is untouched
    else:
        assert reward == cfg


def test_domain_instantiates_with_its_networks(tiny):
    cfg = compose(tiny)
    domain = instantiate(cfg.domain.problem)
    denoiser, family = instantiate(cfg.domain.denoiser), instantiate(cfg.domain.family)
    assert (domain.vocab_size, domain.length) == (8, 12)
    assert family.num_steps == 12 and denoiser.vocab_size == 8


def test_default_config_points_at_the_committed_checkpoint():
    cfg = compose([])
    assert cfg.domain.pretrained.endswith("protein_s32_l32_seed0.safetensors")
    from pathlib import Path

    assert Path(cfg.domain.pretrained).is_file()


@pytest.mark.parametrize("override, field", [
    ("budget.per_round=[16,0]", "budget.per_round[1]"),
    ("budget.per_round=[]", "budget.per_round"),
    ("budget.per_round=[abc]", "budget.per_round[0]"),
    ("finetune.kl_pretrained=-0.1", "finetune.kl_pretrained"),
    ("finetune.kl_previous=-1", "finetune.kl_previous"),
    ("strategy.bonus=-2", "strategy.bonus"),
    ("finetune.lr=0", "finetune.lr"),
    ("finetune.fills=1.5", "finetune.fills"),
    ("finetune.fill_starts=0", "finetune.fill_starts"),
    ("seed=1.5", "seed"),
    ("reward.infeasible_value=lowest", "reward.infeasible_value"),
    ("reward.infeasible_value=min-std", "reward.infeasible_value"),
    ("edits.fraction=1.5", "edits.fraction"),
    ("edits.fraction=-0.1", "edits.fraction"),
    ("edits.eps=0", "edits.eps"),
    ("edits.eps=1", "edits.eps"),
    ("edits.steps=0", "edits.steps"),
    ("edits.steps=1.5", "edits.steps"),
    ("edits.restarts=1.5", "edits.restarts"),
    ("edits.per_restart=0", "edits.per_restart"),
    ("edits.blocks=1", "edits.blocks"),
    ("edits.blocks=-2", "edits.blocks"),
    ("edits.blocks=2.5", "edits.blocks"),
    ("edits.focus=0.5", "edits.focus"),
    ("reward.log_floor=0", "reward.log_floor"),
    ("reward.log_floor=-1", "reward.log_floor"),
    ("budget.sample_chunk=0", "budget.sample_chunk"),
    ("budget.sample_chunk=2.5", "budget.sample_chunk"),
])
def test_bad_values_fail_with_one_line_naming_the_field(override, field, tiny):
    with pytest.raises(ConfigError) as err:
        compose(tiny + [override])
    message = str(err.value)
    assert message.startswith(field) and "\n" not in message


def test_later_settings_at_their_defaults_leave_the_fingerprint_unchanged(tiny):
    """Ledgers written before edits.steps, edits.restarts, edits.per_restart, reward.log_floor,
    domain.max_motif_gap, budget.propose_infeasible and budget.sample_chunk existed still resume."""
    from seiko.build import config_fingerprint

    plain, edited = compose(tiny), compose(tiny + ["edits.fraction=0.5"])
    old_plain, old_edited = compose(tiny), compose(tiny + ["edits.fraction=0.5"])
    for cfg in (old_plain, old_edited):  # as composed before those fields were added
        with open_dict(cfg):
            del cfg.reward["log_floor"]
            del cfg.edits["steps"]
            del cfg.edits["restarts"]
            del cfg.edits["per_restart"]
            del cfg.edits["blocks"]
            del cfg.edits["focus"]
            del cfg.domain["max_motif_gap"]  # derived later; the pair rewards' max_gap it feeds is kept
            del cfg.budget["propose_infeasible"]
            del cfg.budget["sample_chunk"]
    assert config_fingerprint(plain) == config_fingerprint(old_plain)
    assert config_fingerprint(edited) == config_fingerprint(old_edited)
    assert config_fingerprint(compose(tiny + ["edits.fraction=0.5", "edits.steps=3"])) != config_fingerprint(edited)
    assert config_fingerprint(compose(tiny + ["reward.log_floor=0.001"])) != config_fingerprint(plain)
    assert config_fingerprint(compose(tiny + ["edits.restarts=0.5"])) != config_fingerprint(plain)
    assert config_fingerprint(compose(tiny + ["budget.propose_infeasible=false"])) != config_fingerprint(plain)
    assert config_fingerprint(compose(tiny + ["budget.sample_chunk=8"])) != config_fingerprint(plain)
    # finetune.fills and its settings count only when fills are on
    assert config_fingerprint(compose(tiny + ["finetune.fill_starts=4"])) == config_fingerprint(plain)
    with open_dict(old_plain):
        for key in ("fills", "fill_starts"):
            del old_plain.finetune[key]
            del old_plain.finetune.module[key]
        del old_plain.finetune.module["fill_masked"]
        del old_plain.finetune.module["fill_span"]
    assert config_fingerprint(plain) == config_fingerprint(old_plain)
    assert config_fingerprint(compose(tiny + ["finetune.fills=0.5"])) != config_fingerprint(plain)
    restarts, wider = compose(tiny + ["edits.restarts=0.5"]), compose(tiny + ["edits.restarts=0.5", "edits.per_restart=4"])
    assert config_fingerprint(wider) != config_fingerprint(restarts)
    blocks = compose(tiny + ["edits.restarts=0.5", "edits.blocks=4"])
    assert config_fingerprint(blocks) != config_fingerprint(restarts)
    focus = compose(tiny + ["edits.restarts=0.5", "edits.focus=4"])
    assert config_fingerprint(focus) != config_fingerprint(restarts)


def test_fill_rollouts_run_in_a_tiny_infilled_run_and_need_masked_diffusion(tiny, tmp_path):
    from seiko.api import build_loop, run

    summary = run(compose(tiny + ["edits.moves=infill", "edits.restarts=0.5", "edits.masked=3", "finetune.fills=0.5"]),
                  tmp_path / "fills")
    assert summary["queries"] == 32 and summary["status"] == "finished"
    with pytest.raises(ConfigError, match="^finetune.fills"):
        build_loop(compose(["domain=image", "finetune.fills=0.5", "budget.per_round=[4]", "logger=none"]),
                   tmp_path / "image")


def test_best_preset_is_the_benchmarked_setting():
    """`experiment=ehrlich_seiko_best` must stay the setting whose results docs/protein-benchmark.md reports:
    the config the benchmark script composes for its command ('The best setting: one setting for both
    functions'), built by the script's own ``schedule`` and ``overrides_for``."""
    from omegaconf import OmegaConf

    from helpers import experiment_script

    bench = experiment_script("feedback_efficiency")
    extra = ["finetune.kl_pretrained=0.003", "finetune.support_eps=0.003", "finetune.steps=15", "edits.fraction=1.0",
             "edits.restarts=0.5", "edits.per_restart=16", "edits.eps=0.0001", "edits.blocks=8", "edits.focus=4"]
    per_round = bench.schedule([500, 1000, 2000], 2, round_size=125)
    command = bench.overrides_for(dict(method="ucb_sparse", motifs=4, seed=0, per_round=per_round), extra)
    preset = compose(["experiment=ehrlich_seiko_best", "seed=0", "progress=false", "logger=none"])
    assert OmegaConf.to_container(preset) == OmegaConf.to_container(compose(command))
    assert list(preset.budget.per_round) == [125] * 16
