"""The benchmark scripts report what their tables claim: the share of labels bought for infeasible
designs, per function, read from each run's own ledger; the PMO script's rounds and peak memory."""
import json
import time

import numpy as np
import pytest
import torch

from conftest import TINY
from helpers import experiment_script
from seiko.ledger import Ledger


def test_rows_carry_the_function_and_the_infeasible_share_of_the_labels(tmp_path):
    bench = experiment_script("feedback_efficiency")
    spec = dict(function=0, motifs=1, method="greedy", seed=0, per_round=[16, 16], budgets=[16, 32],
                dir=tmp_path / "m1" / "greedy" / "seed0")
    tiny = [o for o in TINY if not o.startswith(("budget.per_round", "domain.num_motifs"))]
    bench.run_spec(spec, tiny)
    _, rows, best = bench.read_run(spec["dir"])
    with Ledger(spec["dir"] / "ledger.sqlite") as ledger:
        values = ledger.labelled_arrays()[1]
    assert [r["budget"] for r in rows] == [16, 32] and all(r["function"] == 0 for r in rows)
    assert [r["rounds"] for r in rows] == [1, 2] and rows[1]["seconds"] > rows[0]["seconds"] > 0
    assert np.isclose(bench.per_round(rows[1:]), rows[1]["seconds"] / 2)
    for r in rows:
        assert np.isclose(r["infeasible_labels"], np.mean(~np.isfinite(values[: r["budget"]])))
    assert json.loads((spec["dir"] / "bench.json").read_text())["function"] == 0


def test_other_functions_are_their_own_folders_and_domain_seeds():
    bench = experiment_script("feedback_efficiency")
    args = type("Args", (), dict(functions=[0, 2], motifs=[4], seeds=[1], methods=["seiko_infill"],
                                 budgets=[500, 1000], first_rounds=2, round_size=125, out="/tmp/x", **bench.SIZE))()
    runs = bench.plan(args)
    assert [str(r["dir"]) for r in runs] == ["/tmp/x/m4/seiko_infill/seed1", "/tmp/x/m4_f2/seiko_infill/seed1"]
    overrides = bench.overrides_for(runs[1], [])
    assert "domain.seed=2" in overrides and "experiment=ehrlich_seiko" in overrides
    assert not any(o.startswith("domain.seed") for o in bench.overrides_for(runs[0], []))
    assert "domain.dim=32" in overrides and "domain.motif_length=4" in overrides


def test_holo_bench_size_runs_in_its_own_folders_with_its_domain():
    """--dim 256 --motif-length 8 --quantization 8 (issue 15, part 4) must neither share folders with the
    length-32 runs (a finished one would be skipped as done) nor keep the length-32 domain."""
    bench = experiment_script("feedback_efficiency")
    args = type("Args", (), dict(functions=[0], motifs=[4], seeds=[0], methods=["seiko_infill", "best_of_n"],
                                 budgets=[2000, 5000], first_rounds=2, round_size=125, out="/tmp/x",
                                 dim=256, motif_length=8, quantization=8))()
    runs = bench.plan(args)
    assert [str(r["dir"]) for r in runs] == ["/tmp/x/m4_l256/seiko_infill/seed0", "/tmp/x/m4_l256/best_of_n/seed0/b2000",
                                             "/tmp/x/m4_l256/best_of_n/seed0/b5000"]
    assert sum(runs[0]["per_round"]) == 5000 and max(runs[0]["per_round"]) == 125
    overrides = bench.overrides_for(runs[0], [])
    assert {"domain.dim=256", "domain.motif_length=8", "domain.quantization=8"} <= set(overrides)
    assert "finetune.steps=1" in bench.overrides_for(dict(runs[0], method="seiko_infill_fills60_frozen"), [])


def test_pmo_schedules_rounds_as_pmo_runs_graph_ga_and_as_the_docking_benchmark_asks():
    bench = experiment_script("pmo_benchmark")
    assert bench.schedule("ucb", 1000, 200) == [100, 100, 200, 200, 200, 200]
    assert bench.schedule("mol_ga", 256, 200) == [120, 70, 66]
    assert bench.schedule("best_of_n", 256, 200) == [256]
    # the docking benchmark: SEIKO in exactly 4 rounds of 64; mol-ga keeps its generations
    assert bench.schedule("ucb", 256, 200, [64, 64, 64, 64]) == [64, 64, 64, 64]
    assert bench.schedule("mol_ga", 256, 200, [64, 64, 64, 64]) == [120, 70, 66]
    with pytest.raises(SystemExit, match="sums to 128, not --budget 256"):
        bench.schedule("ucb", 256, 200, [64, 64])


def test_pmo_preset_is_the_benchmarked_setting_on_the_benchmark_protocol():
    """``seiko`` swaps experiment=pmo for its preset (one experiment override): the config is the one
    the seed-0 runs in experiments/results/pmo_seiko were made with (``ucb`` plus these overrides),
    on pmo's rounds, screen and checkpoint."""
    from omegaconf import OmegaConf

    from seiko.api import compose

    bench = experiment_script("pmo_benchmark")
    rounds = bench.schedule("ucb", 1000, 200)
    extra = ["edits.moves=infill", "edits.fraction=1.0", "edits.restarts=0.5", "edits.per_restart=16", "edits.focus=4",
             "edits.candidates=8", "edits.masked=8", "edits.span=0.5", "budget.propose_infeasible=false",
             "finetune.kl_pretrained=0.1", "finetune.support_eps=0.003"]
    command = bench.overrides("zaleplon_mpo", "seiko", 1, rounds, [])
    assert [o for o in command if o.startswith("experiment=")] == ["experiment=pmo_seiko"]
    preset, paper = compose(command), compose(bench.overrides("zaleplon_mpo", "ucb", 1, rounds, []))
    assert OmegaConf.to_container(preset) == OmegaConf.to_container(
        compose(bench.overrides("zaleplon_mpo", "ucb", 1, rounds, extra)))
    for cfg in (paper, preset):
        assert list(cfg.budget.per_round) == rounds and cfg.budget.query_infeasible is False
        assert cfg.strategy.name == "ucb" and cfg.seed == 1 and cfg.domain.name == "molecule"
    assert paper.edits.fraction == 0 and paper.budget.propose_infeasible and paper.finetune.kl_pretrained < 0.1


def test_peak_rss_sees_memory_held_only_inside_the_block():
    PeakRSS = experiment_script("pmo_benchmark").PeakRSS  # bench_common's, as pmo_benchmark measures its runs
    with PeakRSS(every=0.01) as outside:
        pass
    with PeakRSS(every=0.01) as memory:
        block = np.ones(50_000_000)  # 0.4 GB, touched
        time.sleep(0.1)
        del block
    assert memory.peak_gb - outside.peak_gb > 0.35


def test_fill_quality_scores_every_fill_of_every_start_with_the_true_oracle(tmp_path):
    """fill_quality.measure: starts x per fills, the same re-maskings for any policy at one seed, and
    shares that are shares (a start's fills cannot all improve it when it is a local optimum)."""
    from seiko.api import build_loop, compose

    fq = experiment_script("fill_quality")
    loop = build_loop(compose(list(TINY)), tmp_path)
    domain, family, policy = loop.domain, loop.method.family, loop.method.denoiser
    tokens = domain.pretraining_data(3, torch.Generator().manual_seed(0))
    labels = np.asarray(domain.default_oracle()(domain.decode(tokens)), dtype=float)
    a = fq.measure(domain, family, policy, "p", tokens, labels, 5, 3, 0.5, seed=1, round=0)
    b = fq.measure(domain, family, policy, "p", tokens, labels, 5, 3, 0.5, seed=1, round=0)
    assert a == b and a["starts"] == 3 and a["fills"] == 15 and a["round"] == 0
    assert 0.0 <= a["improved"] <= 1.0 and 0.0 <= a["feasible"] <= 1.0 and a["best_gain"] >= 0.0
    assert np.isclose(a["start_mean"], labels.mean())


def test_round_cost_reports_the_seconds_of_every_phase_of_a_round():
    """round_cost.one_round on a tiny domain (its overrides come after the length-256 ones and win)."""
    rc = experiment_script("round_cost")
    tiny = [o for o in TINY if not o.startswith(("budget.per_round", "finetune.steps", "eval.num_samples"))]
    row = rc.one_round(1.0, 16, 1, 8, tiny + ["edits.masked=3"])
    assert row["fills"] == 1.0 and all(row[p] >= 0 for p in rc.PHASES) and row["update"] > 0
    assert row["total"] >= sum(row[p] for p in rc.PHASES) - 1e-6
