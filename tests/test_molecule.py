"""The molecule domain: SELFIES tokens, canonical SMILES designs, the MOSES filters, and runs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, seiko_env
from seiko.api import compose, run
from seiko.chem.data import load_smiles
from seiko.chem.filters import failed_filter, passes_filters
from seiko.config import ConfigError
from seiko.domains import MoleculeDomain
from seiko.ledger import Ledger

MOL_TINY = ["domain=molecule", "domain.pretrained=null", "domain.pretrain_steps=20", "domain.denoiser.d_model=32",
            "domain.denoiser.num_layers=1", "domain.denoiser.num_heads=2", "budget.per_round=[8,8]",
            "budget.oracle_batch_size=4", "finetune.steps=2", "finetune.batch_size=4", "reward.max_epochs=5",
            "eval.num_samples=8", "progress=false", "logger=none", "oracle=qed"]


@pytest.fixture(scope="module")
def domain():
    return MoleculeDomain()


def test_the_moses_filters_name_what_fails():
    assert failed_filter("CCOC(=O)c1ccccc1") is None
    assert failed_filter("C[NH3+]") == "charge"
    assert failed_filter("C1CCCCCCC1") == "ring>=8" and failed_filter("C1CCCCCC1") is None
    assert failed_filter("CCP(C)C") == "atom:P" and failed_filter("CCI") == "atom:I"
    assert failed_filter("not a molecule") == "invalid" and failed_filter("") == "invalid"
    assert failed_filter("CCC1OC1") == "MCF5" and failed_filter("CN=NC") == "MCF10"  # an epoxide, an azo group
    assert all(passes_filters(s) for s in load_smiles("moses")[:200])  # MOSES was built by these filters


def test_molecules_round_trip_through_tokens_as_canonical_smiles(domain):
    smiles = list(load_smiles("moses")[:50])
    tokens = domain.encode(smiles)
    assert tokens.shape == (50, 56) and tokens.dtype == torch.long and int(tokens.max()) < domain.vocab_size
    from rdkit import Chem

    assert domain.decode(tokens) == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in smiles]
    assert torch.equal(domain.encode(domain.decode(tokens)), tokens)  # MOSES SMILES are canonical
    assert domain.is_feasible(tokens).all()


def test_padding_anywhere_decodes_to_nothing_and_unwritable_molecules_are_empty(domain):
    tokens = domain.encode(["CCO"])
    shifted = torch.roll(tokens, 5, dims=1)  # [nop] first, then the molecule
    assert domain.decode(shifted) == ["CCO"]
    assert domain.decode(torch.zeros(1, 56, dtype=torch.long)) == [""]
    assert domain.write("C[NH3+]") is None and domain.write("C" * 57) is None and domain.write("C" * 56)
    assert torch.equal(domain.encode(["C[NH3+]", ""]), torch.zeros(2, 56, dtype=torch.long))
    assert not domain.is_feasible(domain.encode([""])).any()


def test_pretraining_draws_are_fresh_and_feasible(domain):
    a = domain.pretraining_data(64, torch.Generator().manual_seed(0))
    b = domain.pretraining_data(64, torch.Generator().manual_seed(1))
    assert a.shape == (64, 56) and not torch.equal(a, b) and domain.is_feasible(a).float().mean() == 1.0


def test_features_onehot_or_fingerprints(domain):
    tokens = domain.encode(["CCO", "c1ccccc1", ""])
    onehot = torch.nn.functional.one_hot(tokens, domain.vocab_size).float()
    assert domain.features(onehot).shape == (3, 56 * domain.vocab_size) and domain.differentiable_features
    prints = MoleculeDomain(features="fingerprint")
    fp = prints.features(onehot)
    assert fp.shape == (3, 2048) and not prints.differentiable_features
    assert fp[0].sum() > 0 and fp[2].sum() == 0  # the empty molecule has no bits
    assert torch.equal(fp[:2], prints.fingerprints(["CCO", "c1ccccc1"]))


def test_bad_molecule_settings_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="domain.features"):
        MoleculeDomain(features="ecfp")
    with pytest.raises(ValueError, match="domain.data"):
        MoleculeDomain(data=str(tmp_path / "missing.smi")).dataset
    cfg = compose(MOL_TINY + ["domain.features=fingerprint", "finetune=backprop"])
    with pytest.raises(ConfigError, match="finetune: backprop"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "ledger.sqlite").exists()  # nothing bought
    with pytest.raises(ConfigError, match="strategy=ts"):
        run(compose(MOL_TINY + ["domain.features=fingerprint", "reward=gp_tanimoto", "finetune=policy_gradient",
                                "strategy=ts"]), tmp_path / "ts")
    with pytest.raises(ConfigError, match="strategy=mol_ga"):
        run(compose(["strategy=mol_ga"]), tmp_path / "protein")


@pytest.mark.parametrize("strategy", ["ucb", "greedy", "ts", "bootstrap", "non_adaptive", "best_of_n",
                                      "online_ppo", "mol_ga"])
def test_every_strategy_runs_on_molecules(strategy, tmp_path):
    summary = run(compose(MOL_TINY + [f"strategy={strategy}"]), tmp_path)
    assert summary["status"] == "finished" and summary["queries"] == 16
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        designs = [q.design for q in ledger.queries()]
    from rdkit import Chem

    assert len(set(designs)) == len(designs)  # distinct queries: no molecule bought twice
    assert all(d == "" or Chem.MolToSmiles(Chem.MolFromSmiles(d)) == d for d in designs)  # canonical SMILES
    final = summary["final"]
    for key in ("validity", "uniqueness", "novelty_pretraining", "internal_diversity", "filters", "top10_auc"):
        assert 0.0 <= final[key] <= 1.0, key
    assert final["top10_so_far"] <= final["best_so_far"] + 1e-12
    assert final["eval_reward_mean"] is not None  # QED is synthetic: fresh samples are scored


def test_the_tanimoto_gp_on_fingerprints_with_ppo(tmp_path):
    summary = run(compose(MOL_TINY + ["domain.features=fingerprint", "reward=gp_tanimoto",
                                      "finetune=policy_gradient"]), tmp_path)
    assert summary["status"] == "finished" and summary["rounds"] == 2 and "finetune/reward" in summary["final"]


def test_screened_molecules_never_reach_the_oracle_and_repeats_are_free(tmp_path):
    seen = []

    def oracle(smiles):
        seen.extend(smiles)
        return [float(len(s)) for s in smiles]

    cfg = compose(MOL_TINY + ["budget.query_infeasible=false", "strategy=greedy"])
    run(cfg, tmp_path, oracle=oracle)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        queries = ledger.queries()
    assert len(queries) == 16 and len(set(q.design for q in queries)) == 16
    for q in queries:
        if passes_filters(q.design):
            assert q.design in seen and q.status == "labelled"
        else:
            assert q.design not in seen and q.status == "infeasible" and q.value == -np.inf
    assert len(seen) == len(set(seen))


def test_proposals_the_filters_reject_never_enter_the_ledger_nor_cost_a_label(tmp_path):
    """budget.propose_infeasible=false: the same run with its filter failures drawn again."""
    screened = compose(MOL_TINY + ["budget.query_infeasible=false", "strategy=greedy"])
    run(screened, tmp_path / "a")
    run(compose(MOL_TINY + ["budget.query_infeasible=false", "strategy=greedy", "budget.propose_infeasible=false"]),
        tmp_path / "b")
    with Ledger(tmp_path / "a" / "ledger.sqlite") as a, Ledger(tmp_path / "b" / "ledger.sqlite") as b:
        before, after = a.queries(), b.queries()
    assert sum(q.status == "infeasible" for q in before) > 0  # the tiny model does propose filter failures
    assert len(after) == 16 and len({q.design for q in after}) == 16
    assert all(q.status == "labelled" and passes_filters(q.design) for q in after)
    first = [q.design for q in before if q.round == 0]  # round 0: the same draws, failures skipped
    assert [q.design for q in after if q.round == 0][:3] == [d for d in first if passes_filters(d)][:3]


def test_the_best_molecules_are_drawn_into_tensorboard(tmp_path):
    run(compose([o for o in MOL_TINY if o != "logger=none"] + ["strategy=greedy"]), tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").glob("events.out.tfevents.*"))))
    events.Reload()
    images = events.Images("round/best_so_far")
    assert len(images) == 2 and images[-1].width >= 200 and images[-1].height >= 200


def test_pretrain_on_your_own_smiles_file(tmp_path):
    smiles = tmp_path / "mine.smi"
    smiles.write_text("smiles\n" + "\n".join(load_smiles("moses")[:300]) + "\n")
    out = tmp_path / "mine.safetensors"
    result = subprocess.run([sys.executable, "-m", "seiko.cli", "pretrain", "domain=molecule",
                             f"domain.data={smiles}", "max_steps=3", "eval_every=0", "eval_batches=1", "eval_num=50",
                             "domain.denoiser.d_model=32", "domain.denoiser.num_layers=1",
                             "domain.denoiser.num_heads=2", f"out={out}", f"hydra.run.dir={tmp_path / 'h'}",
                             "trainer.enable_progress_bar=false"],
                            capture_output=True, text=True, env=seiko_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 3 and 0.0 <= report["feasibility"] <= 1.0 and out.stat().st_size > 10_000
    assert report["num_eval"] == 50  # eval_num samples per batch


def test_a_lab_assays_molecules_through_csv_then_the_run_resumes(tmp_path):
    import csv

    from seiko.chem.pmo import PMOOracle
    from seiko.oracles import AwaitingLabels

    lab = [o for o in MOL_TINY if o != "oracle=qed"] + ["oracle._target_=seiko.oracles.LabOracle"]
    with pytest.raises(AwaitingLabels):
        run(compose(lab + ["run_name=lab"]), tmp_path)
    exported = tmp_path / "pending_round_0.csv"
    rows = list(csv.DictReader(open(exported)))
    from rdkit import Chem

    assert len(rows) == 8 and all(Chem.MolToSmiles(Chem.MolFromSmiles(r["design"])) == r["design"] for r in rows)
    qed = PMOOracle("qed")([r["design"] for r in rows])
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "value"])
        w.writerows([r["id"], v] for r, v in zip(rows, qed))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.import_labels_csv(labels) == 8
    with pytest.raises(AwaitingLabels):  # round 1 goes to the lab in turn
        run(compose(lab + ["resume=true"]), tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = ledger.queries(round=0)
        assert [q.design for q in first] == [r["design"] for r in rows]  # canonical SMILES, as the lab saw them
        assert len(ledger.pending(1)) == 8 and ledger.completed_rounds() == [0]


def test_smiles_tokens_round_trip_and_unparsable_strings_are_the_empty_design():
    smiles = MoleculeDomain(representation="smiles")
    assert smiles.vocab_size == 25
    data = list(load_smiles("moses")[:30])
    tokens = smiles.encode(data)
    assert smiles.decode(tokens) == data and smiles.is_feasible(tokens).all()
    broken = smiles.encode(["C1CC"])  # an unclosed ring writes fine but does not parse
    assert int(broken.count_nonzero()) == 4 and smiles.decode(broken) == [""]
    assert not smiles.is_feasible(broken).any()
    with pytest.raises(ValueError, match="domain.representation"):
        MoleculeDomain(representation="inchi")
