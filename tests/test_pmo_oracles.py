"""The RDKit PMO oracles equal PyTDC 1.1.15's values; invalid molecules are NaN, never an exception."""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from rdkit import Chem

from seiko.chem import pmo
from seiko.chem.properties import largest_basis_cycle
from seiko.chem.scoring import score_smiles
from seiko.oracles import call_oracle

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "pmo_reference.json").read_text())
SMILES = REFERENCE["smiles"]
ORACLE_CONFIGS = sorted(p for p in (ROOT / "configs" / "oracle").glob("*.yaml")  # docking: tests/test_docking.py
                        if "seiko.chem.pmo.PMOOracle" in p.read_text())
INVALID = ["xyz", "", "   ", "C1CC", "c1cccc1", "C(C)(C)(C)(C)C"]

PMO_NAMES = {
    "albuterol_similarity", "amlodipine_mpo", "celecoxib_rediscovery", "deco_hop", "fexofenadine_mpo",
    "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl", "median1", "median2", "mestranol_similarity",
    "osimertinib_mpo", "perindopril_mpo", "qed", "ranolazine_mpo", "scaffold_hop", "sitagliptin_mpo",
    "thiothixene_rediscovery", "troglitazone_rediscovery", "valsartan_smarts", "zaleplon_mpo",
}


def test_reference_is_pytdc_1_1_15_on_every_oracle():
    assert REFERENCE["versions"]["pytdc"] == "1.1.15"
    assert "experiments/pmo_reference.py" in REFERENCE["command"]
    assert set(pmo.PMO_TASKS) == PMO_NAMES
    assert set(REFERENCE["values"]) | {"sa_normalized"} == set(pmo.ORACLES)
    assert len(SMILES) >= 40 and all(len(v) == len(SMILES) for v in REFERENCE["values"].values())


@pytest.mark.parametrize("name", sorted(REFERENCE["values"]))
def test_oracle_equals_pytdc(name):
    got = pmo.ORACLES[name](SMILES)
    assert got.dtype == np.float64 and got.shape == (len(SMILES),)
    np.testing.assert_allclose(got, REFERENCE["values"][name], rtol=0, atol=1e-6)


def test_reference_values_are_not_trivial():
    """Each oracle's reference spreads over a range; a task's own target scores high."""
    values = REFERENCE["values"]
    for name, v in values.items():
        assert np.ptp(v) > 0.05, name
    idx = {s: i for i, s in enumerate(SMILES)}
    assert values["celecoxib_rediscovery"][idx[pmo.CELECOXIB]] == pytest.approx(1.0)
    assert values["albuterol_similarity"][idx[pmo.ALBUTEROL]] == pytest.approx(1.0)
    assert values["isomers_c7h8n2o2"][idx["Nc1ccc(cc1)C(=O)NO"]] == pytest.approx(1.0)
    assert values["isomers_c9h10n2o2pf2cl"][idx["CC(NP(=O)(F)F)c1ccc(Cl)cc1C(N)=O"]] == pytest.approx(1.0)


def test_sa_normalized_is_ten_minus_sa_over_nine():
    sa = np.asarray(REFERENCE["values"]["sa"])
    got = pmo.sa_normalized(SMILES)
    np.testing.assert_allclose(got, (10.0 - sa) / 9.0, rtol=0, atol=1e-6)
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("name", sorted(pmo.ORACLES))
def test_invalid_smiles_are_nan(name):
    """PyTDC would give 0.0 (or score / raise on the empty string): here every one is NaN."""
    got = pmo.ORACLES[name](INVALID)
    assert got.shape == (len(INVALID),) and np.isnan(got).all()
    assert pmo.ORACLES[name]([]).shape == (0,)


def test_a_bad_smiles_keeps_the_others():
    picks = [0, 7, 22, 40]
    batch = ["xyz", SMILES[picks[0]], "", SMILES[picks[1]], "C1CC", SMILES[picks[2]], None,
             SMILES[picks[3]]]
    for name in ("osimertinib_mpo", "deco_hop", "sa", "penalized_logp", "isomers_c7h8n2o2"):
        got = pmo.ORACLES[name](batch)
        assert np.isnan(got[[0, 2, 4, 6]]).all(), name
        ref = np.asarray(REFERENCE["values"][name])[picks]
        np.testing.assert_allclose(got[[1, 3, 5, 7]], ref, rtol=0, atol=1e-6)


def test_a_score_that_raises_is_nan_for_that_molecule_only():
    def score(mol):
        if mol.GetNumAtoms() == 1:
            raise RuntimeError("no")
        return float(mol.GetNumAtoms())

    got = score_smiles(score, ["CCO", "C", "c1ccccc1"])
    assert got[0] == 3.0 and math.isnan(got[1]) and got[2] == 6.0


def test_call_oracle_marks_invalid_infeasible():
    result = call_oracle(pmo.PMOOracle("qed"), ["CCO", "not a molecule", "c1ccccc1"])
    assert result.error is None
    assert result.feasible.tolist() == [True, False, True]


def test_unknown_task_and_string_input():
    with pytest.raises(ValueError, match=r"oracle.name: unknown PMO task 'drd2'; known: .*osimertinib_mpo"):
        pmo.PMOOracle("drd2")
    with pytest.raises(TypeError):
        pmo.PMOOracle("qed")("CCO")


def test_oracles_pickle_by_name():
    for oracle in (pmo.PMOOracle("deco_hop"), pmo.sa):
        clone = pickle.loads(pickle.dumps(oracle))
        assert clone.name == oracle.name and clone(["CCO"])[0] == oracle(["CCO"])[0]


def test_largest_basis_cycle():
    cases = {"CCO": 0, "c1ccccc1": 6, "c1ccc2ccccc2c1": 6, "C1CCCCCCCCCCC1": 12, "C1C2CC3CC1CC(C2)C3": 8}
    for smiles, length in cases.items():
        assert largest_basis_cycle(Chem.MolFromSmiles(smiles)) == length, smiles


def test_every_oracle_config_instantiates_and_scores():
    assert {p.stem for p in ORACLE_CONFIGS} == set(pmo.ORACLES)
    for path in ORACLE_CONFIGS:
        assert path.read_text().startswith("# "), path.name
        cfg = OmegaConf.load(path)
        assert cfg.name == path.stem
        oracle = instantiate(cfg)
        got = np.asarray(oracle(["CC(C)(C)NCC(O)c1ccc(O)c(CO)c1", "xyz"]))
        assert got.dtype == np.float64 and got.shape == (2,), path.name
        assert np.isfinite(got[0]) and np.isnan(got[1]), path.name
        assert got[0] == pmo.ORACLES[path.stem](["CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"])[0]
