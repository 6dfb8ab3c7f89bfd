"""End-to-end tiny runs of every strategy and baseline through the real loop, ledger and fits."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from seiko.api import compose, run
from seiko.ledger import Ledger
from seiko.cli_support import CONFIG_DIR

STRATEGIES = sorted(p.stem for p in (CONFIG_DIR / "strategy").glob("*.yaml") if p.stem != "mol_ga")  # SMILES only


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_end_to_end(strategy, tiny, tmp_path):
    cfg = compose(tiny + [f"strategy={strategy}"])
    summary = run(cfg, tmp_path)
    single = strategy in ("non_adaptive", "best_of_n")
    assert summary["status"] == "finished"
    assert summary["queries"] == 32 and summary["rounds"] == (1 if single else 2)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.num_labelled() == 32 and not ledger.pending()
        assert ledger.completed_rounds() == ([0] if single else [0, 1])
    final = summary["final"]
    assert 0.0 <= final["feasibility"] <= 1.0 and 0.0 <= final["diversity"] <= 1.0
    assert (tmp_path / "reward_vs_queries.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text())["queries"] == 32
    assert "${" not in (tmp_path / "config.yaml").read_text()  # resolved, for `seiko sample`
    if strategy not in ("genetic", "holo_ga"):  # no policy to save
        rounds = sorted((tmp_path / "checkpoints").glob("round_*.safetensors"))
        assert len(rounds) == summary["rounds"] and load_file(str(rounds[-1]))


def test_seiko_with_the_ppo_finetuner(tiny, tmp_path):
    summary = run(compose(tiny + ["strategy=ucb", "finetune=policy_gradient"]), tmp_path)
    assert summary["status"] == "finished" and summary["rounds"] == 2
    assert "finetune/reward" in summary["final"] and summary["final"]["finetune/kl_pretrained"] >= 0


@pytest.mark.parametrize("strategy", ["ucb", "ts"])
def test_seiko_with_the_sparse_pair_model_and_restarts(strategy, tiny, tmp_path):
    """reward=sparse_pairs fits log labels (infeasible ones dropped) and drives fine-tuning and
    restarts, which buy no design twice."""
    summary = run(compose(tiny + [f"strategy={strategy}", "reward=sparse_pairs", "reward.max_epochs=4",
                                  "edits.restarts=0.5", "edits.per_restart=4", "edits.blocks=3"]), tmp_path)
    assert summary["status"] == "finished" and summary["rounds"] == 2
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.num_labelled() == 32 and len(set(q.design for q in ledger.queries())) == 32


def _round_designs(path, round):
    with Ledger(path / "ledger.sqlite") as ledger:
        return [q.design for q in ledger.queries(round)]


def test_strategies_differ_after_the_first_round(tiny, tmp_path):
    """Same seed: round 0 is identical; after fine-tuning on different objectives, round 1 is not."""
    designs = {}
    for strategy in ("greedy", "ts", "ucb"):
        cfg = compose(tiny + [f"strategy={strategy}", "finetune.steps=4", "finetune.lr=3e-3"])
        run(cfg, tmp_path / strategy)
        designs[strategy] = (_round_designs(tmp_path / strategy, 0), _round_designs(tmp_path / strategy, 1))
    assert designs["greedy"][0] == designs["ts"][0] == designs["ucb"][0]
    assert designs["greedy"][1] != designs["ts"][1]
    assert designs["greedy"][1] != designs["ucb"][1]


def test_user_oracle_failures_are_recorded_not_fatal(tiny, tmp_path):
    from helpers import failing_oracle

    cfg = compose(tiny + ["strategy=greedy"])
    summary = run(cfg, tmp_path, oracle=failing_oracle)
    assert summary["status"] == "finished"
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        failed = [q for q in ledger.queries() if q.error]
        assert failed and all(np.isnan(q.value) and q.feasible is False for q in failed)
        assert all("assay plate dropped" in q.error for q in failed)
        assert ledger.num_labelled() == 32


def test_an_oracle_of_only_nans_stops_with_a_clear_error_and_keeps_the_ledger(tiny, tmp_path):
    from helpers import nan_oracle

    cfg = compose(tiny + ["strategy=greedy", "reward.infeasible_value=null"])
    with pytest.raises(RuntimeError, match="fewer than 2 usable labels"):
        run(cfg, tmp_path, oracle=nan_oracle)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.num_labelled() == 16  # round 0's labels were kept


def test_a_users_oracle_is_never_spent_on_evaluation(tiny, tmp_path):
    from helpers import CountingOracle

    log = tmp_path / "oracle.log"
    summary = run(compose(tiny + ["strategy=greedy"]), tmp_path / "run", oracle=CountingOracle(str(log)))
    assert len(log.read_text().splitlines()) == summary["queries"] == 32  # eval.with_oracle=auto
    assert "eval_reward_mean" not in summary["final"] and "feasibility" in summary["final"]
