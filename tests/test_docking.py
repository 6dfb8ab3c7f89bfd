"""The docking oracle: bad molecules are NaN without docking, repeats dock once, failures stay local.

The fast tests replace the process pool with an inline executor and ``_dock`` with a mock, so
no Vina runs; ``test_real_docking`` (slow) docks one molecule with dockstring.
"""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seiko.chem import docking
from seiko.chem.docking import DockingOracle

pytest.importorskip("dockstring")
ROOT = Path(__file__).resolve().parents[1]


class InlineExecutor:
    """Stands in for ProcessPoolExecutor: runs each job at submit time, in this process."""

    created = 0

    def __init__(self, *args, **kwargs):
        InlineExecutor.created += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as e:  # noqa: BLE001
            future.set_exception(e)
        return future


@pytest.fixture
def dock(monkeypatch):
    """A mock ``_dock`` (canonical SMILES -> raw score -len(smiles)), run inline."""
    fake = mock.Mock(side_effect=lambda smiles, seed, timeout_s: -float(len(smiles)))
    monkeypatch.setattr(docking, "ProcessPoolExecutor", InlineExecutor)
    monkeypatch.setattr(docking, "_dock", fake)
    InlineExecutor.created = 0
    return fake


def test_unknown_target_names_the_field():
    with pytest.raises(ValueError, match=r"oracle\.target: unknown docking target 'NOPE'.*DRD2"):
        DockingOracle("NOPE")


def test_obabel_is_found_without_editing_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    DockingOracle("DRD2")
    obabel = shutil.which("obabel")
    assert obabel is not None and "openbabel" in obabel
    out = subprocess.run([obabel, "-:CCC(=O)O", "-ismi", "-ocan", "-p7.4"], capture_output=True, text=True)
    assert out.stdout.startswith("[O-]C(=O)CC"), out.stderr  # plugins found: protonation works


def test_invalid_smiles_are_nan_and_never_docked(dock):
    got = DockingOracle("DRD2", num_workers=2)(["xyz", "", "   ", "C1CC", "OCC"])
    assert got.dtype == np.float64 and got.shape == (5,)
    assert np.isnan(got[:4]).all() and got[4] == 3.0  # negated: higher is better
    dock.assert_called_once_with("CCO", 0, None)
    got = DockingOracle("DRD2")(["xyz", ""])
    assert np.isnan(got).all() and dock.call_count == 1 and InlineExecutor.created == 1  # no pool


def test_repeats_within_a_call_dock_once(dock):
    got = DockingOracle("DRD2", seed=7)(["OCC", "CCO", "c1ccccc1O", "C(O)C"])
    assert sorted(c.args[0] for c in dock.call_args_list) == ["CCO", "Oc1ccccc1"]
    assert all(c.args[1] == 7 for c in dock.call_args_list)
    np.testing.assert_array_equal(got, [3.0, 3.0, 9.0, 3.0])


def test_one_failure_leaves_the_other_values(dock):
    from dockstring import DockstringError

    def flaky(smiles, seed, timeout_s):
        if smiles == "Oc1ccccc1":
            raise DockstringError("Ligand protonation with OpenBabel failed")
        if smiles == "CCN":
            raise RuntimeError("Vina found no pose")
        return -5.5

    dock.side_effect = flaky
    got = DockingOracle("DRD2", negate=False)(["CCO", "c1ccccc1O", "CCN", "CCC"])
    assert np.isnan(got[1]) and np.isnan(got[2])
    np.testing.assert_array_equal(got[[0, 3]], [-5.5, -5.5])  # raw kcal/mol


def test_config_instantiates_and_pickles():
    cfg = OmegaConf.load(ROOT / "configs" / "oracle" / "docking.yaml")
    oracle = instantiate(cfg)
    assert isinstance(oracle, DockingOracle) and not hasattr(oracle, "synthetic")
    assert (oracle.target, oracle.num_workers, oracle.seed, oracle.negate) == ("DRD2", None, 0, True)
    copy = pickle.loads(pickle.dumps(DockingOracle("ESR1", num_workers=3, seed=2, timeout_s=60.0)))
    assert (copy.target, copy.num_workers, copy.seed, copy.timeout_s) == ("ESR1", 3, 2, 60.0)


@pytest.mark.slow
def test_real_docking():
    """One Vina run (phenol on DRD2, one core): the raw score is negative, the oracle's value positive."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    oracle = DockingOracle("DRD2", num_workers=1)
    raw = oracle._dock_all(["Oc1ccccc1"])["Oc1ccccc1"]  # kcal/mol, as dockstring returns it
    assert np.isfinite(raw) and raw < 0
    with mock.patch.object(oracle, "_dock_all", return_value={"Oc1ccccc1": raw}):
        got = oracle(["c1ccccc1O", "xyz"])  # the same path as a real call, without a second docking
    assert got[0] == -raw > 0 and np.isnan(got[1])
