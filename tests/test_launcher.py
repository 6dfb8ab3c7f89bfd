"""Past one machine: hydra/launcher=submitit_slurm sends a sweep to SLURM, trainer=slurm joins its
tasks in Lightning's DDP. No cluster is reachable here, so the launcher is composed, instantiated and
run up to the sbatch script it would submit, and the trainer is built inside a faked SLURM task."""
from __future__ import annotations

import warnings

import pytest
from omegaconf import OmegaConf

from seiko.cli_support import CONFIG_DIR, build_trainer

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def compose_cli(overrides, hydra=True):
    """The CLI's config, Hydra's own node included (``seiko.api.compose`` drops it)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema with the same name")
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def test_the_preset_is_the_plugins_slurm_launcher_with_seiko_defaults():
    cfg = compose_cli(["hydra/launcher=submitit_slurm"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM_LAUNCHER
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_slurm"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.cpus_per_task, launcher.mem_gb) == (1, 4, 8, 128)
    assert launcher.tasks_per_node == launcher.gpus_per_node  # one process per GPU for Lightning's DDP
    assert launcher.timeout_min == 1440 and launcher.partition is None and launcher.max_num_timeout == 0
    assert str(launcher.submitit_folder).startswith(str(cfg.hydra.sweep.dir))
    # the plugin's schema still types the preset: a misspelt field or a wrong type is refused
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_cli(["hydra/launcher=submitit_slurm", "hydra.launcher.gpu_per_node=2"])
    with pytest.raises(ConfigCompositionException):
        compose_cli(["hydra/launcher=submitit_slurm", "hydra.launcher.nodes=two"])


def test_hydra_says_the_same_name_schema_matching_is_deprecated_and_nothing_else():
    """The one warning the preset costs (see configs/hydra/launcher/submitit_slurm.yaml)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compose(config_name="config", overrides=["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    messages = [str(w.message) for w in caught]
    assert all("validated against ConfigStore schema with the same name" in m for m in messages), messages


def test_the_launcher_renders_one_sbatch_job_per_sweep_point_without_submitting(tmp_path, monkeypatch):
    import submitit
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor

    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    cfg = compose_cli(["hydra/launcher=submitit_slurm", "trainer=slurm", "hydra.launcher.nodes=2",
                       "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=8",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    launcher = instantiate(cfg.hydra.launcher)
    assert isinstance(launcher, SlurmLauncher)
    assert launcher.params["tasks_per_node"] == 8 and launcher.params["nodes"] == 2

    scripts, submitted = [], []

    class Job:
        def results(self):
            return ["not run"]

    def fake_map_array(self, fn, *iterables):  # what submitit would submit: sbatch text, one job per point
        scripts.append(self._executor._make_submission_file_text("python -u -m submitit.core._submit", "uid"))
        submitted.extend(zip(*iterables))
        return [Job() for _ in submitted]

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    launcher.setup(hydra_context=None, task_function=lambda cfg: None, config=cfg)
    returns = launcher.launch([["strategy=ucb"], ["strategy=ts"]], initial_job_idx=0)
    assert returns == ["not run", "not run"] and [s[0] for s in submitted] == [["strategy=ucb"], ["strategy=ts"]]
    (script,) = scripts
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=128GB", "#SBATCH --time=1440",
                 "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@120"):
        assert line in script.splitlines(), (line, script)
    assert "srun" in script  # the tasks are started by srun: one process per GPU on every node
    assert (tmp_path / "sweep").is_dir()


def test_trainer_slurm_reads_nodes_and_devices_from_the_job(monkeypatch):
    cfg = compose_cli(["trainer=slurm", "trainer.accelerator=cpu"], hydra=False)
    assert cfg.trainer.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
    for var in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_JOB_NAME"):
        monkeypatch.delenv(var, raising=False)
    resolved = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert (resolved["devices"], resolved["num_nodes"]) == (1, 1)  # outside SLURM: one process
    # explicit values win
    cfg = compose_cli(["trainer=slurm", "trainer.accelerator=cpu", "trainer.num_nodes=2", "trainer.devices=2"],
                      hydra=False)
    trainer = build_trainer(cfg.trainer)
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 2, 4)


def test_inside_a_slurm_task_lightning_takes_its_rank_from_slurm_and_starts_no_processes(monkeypatch):
    """Task 5 of a 2-node x 4-task job, as srun starts it: Lightning and seiko agree on its rank."""
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from seiko.distributed import global_rank, is_rank_zero

    job = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2", "SLURM_PROCID": "5",
           "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_NAME": "seiko", "SLURM_JOB_ID": "4242",
           "SLURM_NODELIST": "gpu[07-08]"}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(var, "")  # recorded, so what Lightning writes (the rendezvous) is undone too
        monkeypatch.delenv(var)
    for var, value in job.items():
        monkeypatch.setenv(var, value)
    cfg = compose_cli(["trainer=slurm", "trainer.accelerator=cpu"], hydra=False)
    rank = getattr(rank_zero_only, "rank", 0)
    try:
        trainer = build_trainer(cfg.trainer)
        env = trainer.strategy.cluster_environment
        assert isinstance(env, SLURMEnvironment)
        assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 4, 8)
        assert (trainer.global_rank, trainer.node_rank, trainer.local_rank) == (5, 1, 1)
        assert env.creates_processes_externally
        launcher = trainer.strategy.launcher  # popen's launcher, which starts no process under SLURM
        assert launcher.launch(lambda: "ran in this task", trainer=trainer) == "ran in this task"
        assert launcher.procs == []  # srun started the ranks; Lightning started none
        assert env.main_address == "gpu07"
        assert global_rank() == 5 and not is_rank_zero()  # seiko's loop: this rank follows rank 0
        # why trainer=slurm and not trainer=ddp: ddp's spawn would start 4 more processes in each task
        from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

        spawn = build_trainer(compose_cli(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=4",
                                           "trainer.num_nodes=2"], hydra=False).trainer)
        assert isinstance(spawn.strategy.launcher, _MultiProcessingLauncher)
    finally:
        rank_zero_only.rank = rank  # the Trainer made this process rank 5 for Lightning's rank-zero logging
