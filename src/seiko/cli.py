"""The ``seiko`` command: a Hydra app for runs and sweeps, plus four small subcommands.

    seiko strategy=ucb budget.per_round=[64,128,256]          # a run
    seiko -m strategy=greedy,ucb,ts strategy.bonus=0.1,1.0      # a sweep (+ sweep_summary.md)
    seiko sample outputs/RUN --round 2 --num 16                 # designs from a saved round
    seiko export-pending outputs/RUN pending.csv                # for an oracle that is a lab
    seiko import-labels outputs/RUN labels.csv                  # then: seiko run_name=RUN resume=true
    seiko pretrain domain=molecule domain.data=my.smi out=my.safetensors   # your own data (seiko.pretrain)
"""
from __future__ import annotations

import sys

from seiko.cli_support import CONFIG_DIR


def _fail(message: str) -> None:
    print(f"seiko: error: {message}", file=sys.stderr)
    sys.exit(2)


def _check_groups(argv: list[str]) -> None:
    """Unknown option of a config group: one line naming the group and the choices."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        # hydra/...: Hydra's own groups (launchers, sweepers) hold plugin options besides the project's
        if not sep or "." in key or key.startswith("hydra/") or not (CONFIG_DIR / key).is_dir():
            continue
        choices = sorted(p.stem for p in (CONFIG_DIR / key).glob("*.yaml"))
        for option in value.split(","):
            if option not in choices:
                _fail(f"{key}={option}: unknown option; choose from {', '.join(choices)}")


def _run(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from seiko.api import run
    from seiko.checkpoint import CheckpointError
    from seiko.config import ConfigError, validate
    from seiko.ledger import LedgerError
    from seiko.oracles import AwaitingLabels

    hydra_cfg = HydraConfig.get()
    try:
        validate(cfg)
        summary = run(cfg, hydra_cfg.runtime.output_dir, overrides=list(hydra_cfg.overrides.task))
    except (ConfigError, CheckpointError, LedgerError) as err:
        _fail(str(err))
    except AwaitingLabels as err:
        print(f"seiko: {err}")
        return
    if "queries" not in summary:  # not rank 0: rank 0 reports
        return
    final = summary.get("final", {})
    print(f"seiko: {summary['queries']} labels bought, best {summary['best_value']}, final samples: "
          f"mean reward {final.get('eval_reward_mean')}, feasibility {final.get('feasibility')}; "
          f"outputs in {hydra_cfg.runtime.output_dir}")


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in ("sample", "export-pending", "import-labels"):
        from seiko.commands import run_subcommand

        sys.exit(run_subcommand(argv))
    if argv and argv[0] == "pretrain":  # seiko pretrain domain=molecule domain.data=my.smi ...
        _check_groups(argv[1:])
        from seiko.pretrain import main as pretrain_main

        sys.argv = [sys.argv[0], *argv[1:]]
        return pretrain_main()
    _check_groups(argv)
    import warnings

    import hydra

    # configs/hydra/launcher/submitit_slurm.yaml replaces the plugin's preset of that name on purpose
    warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema with the same name")

    hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(_run)()


if __name__ == "__main__":
    main()
