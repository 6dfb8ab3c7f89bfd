"""Molecule metrics (MOSES definitions), PMO's top-k AUC, and molecule grid pictures."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from seiko.chem.draw import grid_image, save_grid
from seiko.chem.metrics import (
    canonical,
    filter_pass_rate,
    internal_diversity,
    molecule_metrics,
    novelty,
    top_k_auc,
    top_k_mean,
    uniqueness,
    validity,
)

# "CCO" and "OCC" are the same molecule (ethanol); "xx" does not parse; "" is empty.
BATCH = ["CCO", "OCC", "C1CC1", "xx", ""]


def test_canonical():
    assert canonical("OCC") == canonical("CCO") == "CCO"
    assert canonical("xx") is None
    assert canonical("") is None


def test_validity_uniqueness_novelty():
    assert validity(BATCH) == pytest.approx(3 / 5)
    # valid: CCO, CCO, C1CC1 -> 2 distinct of 3 valid
    assert uniqueness(BATCH) == pytest.approx(2 / 3)
    # distinct valid {CCO, C1CC1}; CCO is in the reference -> 1 of 2 novel
    assert novelty(BATCH, {"CCO"}) == pytest.approx(1 / 2)
    assert novelty(BATCH, set()) == 1.0
    assert novelty(BATCH, {"CCO", "C1CC1"}) == 0.0


def test_undefined_metrics_are_nan():
    assert math.isnan(validity([]))
    assert validity(["xx", ""]) == 0.0
    for value in (uniqueness(["xx", ""]), novelty(["xx"], {"CCO"}), internal_diversity(["xx"]),
                  filter_pass_rate([""], lambda s: True)):
        assert math.isnan(value)


def test_filter_pass_rate_counts_valid_molecules_only():
    seen = []

    def has_oxygen(smi: str) -> bool:
        seen.append(smi)
        return "O" in smi

    # valid: CCO, CCO (passes), C1CC1 (fails); invalid ones are not asked about
    assert filter_pass_rate(BATCH, has_oxygen) == pytest.approx(2 / 3)
    assert seen == ["CCO", "CCO", "C1CC1"]  # canonical SMILES are passed


def test_molecule_metrics_keys():
    m = molecule_metrics(BATCH, reference={"CCO"}, passes=lambda s: "O" in s)
    assert set(m) == {"validity", "uniqueness", "novelty", "internal_diversity", "filters"}
    assert m["validity"] == pytest.approx(0.6) and m["novelty"] == pytest.approx(0.5)
    assert m["internal_diversity"] == pytest.approx(internal_diversity(BATCH))
    assert set(molecule_metrics(BATCH, reference=None)) == {"validity", "uniqueness", "internal_diversity"}


def _direct_intdiv(smiles, p=1):
    """MOSES' formula on 0/1 fingerprint arrays: 1 - mean_j (mean_i T_ij^p)^(1/p)."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    x = np.array([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles], dtype=float)
    tp = x @ x.T
    sim = tp / (x.sum(1)[:, None] + x.sum(1)[None, :] - tp)
    return 1 - np.mean(np.mean(sim**p, axis=0) ** (1 / p))


def test_internal_diversity_matches_moses_definition():
    # N copies of one molecule: every entry of the N x N matrix is 1 -> IntDiv 0.
    assert internal_diversity(["c1ccccc1O"] * 5) == 0.0
    assert internal_diversity(["CCO", "OCC"]) == 0.0

    # Two molecules with Tanimoto s: matrix [[1, s], [s, 1]] -> 1 - (2 + 2s)/4 = (1 - s)/2
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    a, b = (gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in ("CCO", "c1ccccc1O"))
    s = DataStructs.TanimotoSimilarity(a, b)
    assert internal_diversity(["CCO", "c1ccccc1O", "xx"]) == pytest.approx((1 - s) / 2)

    mols = ["CCO", "c1ccccc1", "CC(=O)O", "CC(=O)Nc1ccc(O)cc1", "C1CCNCC1", "CCO"]
    value = internal_diversity(mols)
    assert 0 < value < 1
    assert value == pytest.approx(_direct_intdiv(mols), abs=1e-12)
    assert internal_diversity(mols, p=2) == pytest.approx(_direct_intdiv(mols, p=2), abs=1e-12)


def test_internal_diversity_subsamples_above_2000():
    mols = ["C" * n + "O" for n in range(1, 51)] * 50  # 2500 valid molecules
    value = internal_diversity(mols)
    keep = np.sort(np.random.default_rng(0).choice(len(mols), size=2000, replace=False))
    assert value == pytest.approx(internal_diversity([mols[i] for i in keep]), abs=1e-12)
    assert internal_diversity(mols) == value  # deterministic
    assert 0 < value < 1


def test_top_k_mean():
    assert top_k_mean([0.1, 0.9, 0.5, 0.7], k=2) == pytest.approx(0.8)
    assert top_k_mean([0.3, 0.5], k=10) == pytest.approx(0.4)  # fewer than k: all of them
    assert top_k_mean([float("nan"), 1.0], k=2) == pytest.approx(0.5)
    assert top_k_mean([], k=3) == 0.0


def test_top_k_auc_hand_computed():
    values = [0.1] * 250
    values[10], values[20], values[150], values[240] = 0.5, 0.3, 0.9, 1.0
    # budget 300, freq 100, k 2, 250 calls. Checkpoints: range(100, min(250, 300), 100) = 100, 200.
    #   call 100: top-2 of first 100 = {0.5, 0.3} -> 0.4;  area 100 * (0.4 + 0) / 2   = 20
    #   call 200: top-2 of first 200 = {0.9, 0.5} -> 0.7;  area 100 * (0.7 + 0.4) / 2 = 55
    #   call 250: top-2 of all 250   = {1.0, 0.9} -> 0.95; area  50 * (0.95 + 0.7) / 2 = 41.25
    #   flat to the budget:                                area  50 * 0.95            = 47.5
    # (20 + 55 + 41.25 + 47.5) / 300 = 163.75 / 300
    assert top_k_auc(values, budget=300, k=2, freq=100) == pytest.approx(163.75 / 300)
    # Without the flat part (budget reached): (20 + 55 + 41.25) / 250
    assert top_k_auc(values, budget=250, k=2, freq=100) == pytest.approx(116.25 / 250)


def test_top_k_auc_flat_extension():
    # budget 10, freq 5, k 10, 2 calls: no checkpoint (range(5, 2, 5) is empty)
    #   call 2: mean of both = 0.4; area 2 * (0.4 + 0) / 2 = 0.4; flat: (10 - 2) * 0.4 = 3.2
    assert top_k_auc([0.2, 0.6], budget=10, k=10, freq=5) == pytest.approx(3.6 / 10)


def test_top_k_auc_constant_sequence():
    # PMO's curve starts at (0, 0), so the first segment is a ramp: a constant v over
    # the whole budget scores v * (1 - freq / (2 * budget)), not v.
    #   budget 1000, freq 100: 100 * v / 2 + 800 * v + 100 * v = 950 v -> 0.95 v
    assert top_k_auc([0.7] * 1000, budget=1000, k=10, freq=100) == pytest.approx(0.7 * 0.95)
    # a run stopped at 500 calls: 50 v + 300 v + 100 v + flat 500 v = 950 v as well
    assert top_k_auc([0.7] * 500, budget=1000, k=10, freq=100) == pytest.approx(0.7 * 0.95)
    # and in the limit of logging every call it tends to v: (1000 - 0.5) v / 1000
    assert top_k_auc([0.7] * 1000, budget=1000, k=10, freq=1) == pytest.approx(0.7 * 999.5 / 1000)


def test_top_k_auc_nan_and_neg_inf_count_as_zero():
    # budget 3, freq 1, k 2, values -> [0, 1, 0]
    #   call 1: top {0} -> 0; area 0.   call 2: {1, 0} -> 0.5; area (0.5 + 0) / 2 = 0.25
    #   call 3: {1, 0} -> 0.5; area (0.5 + 0.5) / 2 = 0.5.   (0 + 0.25 + 0.5) / 3 = 0.25
    assert top_k_auc([float("nan"), 1.0, float("-inf")], budget=3, k=2, freq=1) == pytest.approx(0.25)
    assert top_k_auc(np.array([np.nan, 1.0, -np.inf]), budget=3, k=2, freq=1) == pytest.approx(0.25)


def _naive_auc(values, budget, k, freq):
    """Sort-at-every-checkpoint version of the same curve, for comparison."""
    v = [0.0 if (math.isnan(x) or x == -math.inf) else x for x in values][:budget]
    top = lambda n: float(np.mean(sorted(v[:n], reverse=True)[:k]))  # noqa: E731
    points = [(0, 0.0)] + [(i, top(i)) for i in range(freq, min(len(v), budget), freq)] + [(len(v), top(len(v)))]
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))
    return (area + (budget - len(v)) * points[-1][1]) / budget


def test_top_k_auc_matches_naive_computation():
    rng = np.random.default_rng(0)
    for n, budget, k, freq in [(1000, 1000, 10, 100), (537, 1000, 10, 100), (950, 1000, 3, 7),
                               (64, 100, 1, 10), (5, 5, 10, 100), (1, 10, 10, 1)]:
        values = rng.random(n).tolist()
        assert top_k_auc(values, budget, k, freq) == pytest.approx(_naive_auc(values, budget, k, freq), rel=1e-12)


def test_top_k_auc_ignores_calls_past_budget_and_validates():
    values = [0.1, 0.4, 0.3, 0.8]
    assert top_k_auc(values + [100.0], budget=4, k=2, freq=2) == top_k_auc(values, budget=4, k=2, freq=2)
    assert top_k_auc([], budget=10) == 0.0
    for kwargs, name in [({"budget": 0}, "budget"), ({"budget": 10, "k": 0}, "k"),
                         ({"budget": 10, "freq": 0}, "freq")]:
        with pytest.raises(ValueError, match=f"^{name} "):
            top_k_auc(values, **kwargs)
    with pytest.raises(ValueError, match="^k "):
        top_k_mean(values, k=0)


def test_grid_image_shapes():
    one = grid_image(["CCO"], per_row=4, size=100)
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[2] == 3
    assert one.shape == (100, 400, 3)
    five = grid_image(["CCO", "c1ccccc1", "CC(=O)O", "C1CC1", "CCN"], per_row=4, size=100)
    assert five.shape == (200, 400, 3)
    assert five.size > one.size
    assert (one < 128).any()  # something was drawn
    assert one[0, 0].tolist() == [255, 255, 255]  # on white


def test_grid_image_invalid_and_empty_do_not_crash():
    blank = grid_image([])
    assert blank.dtype == np.uint8 and blank.shape == (200, 200, 3) and (blank == 255).all()

    no_legend = grid_image(["xx", ""], per_row=2, size=100)
    assert no_legend.shape == (100, 200, 3) and (no_legend == 255).all()  # empty white cells

    with_legend = grid_image(["xx", ""], legends=["bad", "empty"], per_row=2, size=100)
    assert with_legend.shape == (100, 200, 3)
    assert (with_legend[:, :100] < 128).any() and (with_legend[:, 100:] < 128).any()  # legends written

    mixed = grid_image(["CCO", "xx"], legends=["ethanol", "invalid"], per_row=2, size=100)
    assert (mixed[:, 100:] < 128).any()
    with pytest.raises(ValueError, match="legends"):
        grid_image(["CCO", "xx"], legends=["one"])


def test_save_grid_writes_png(tmp_path):
    path = save_grid(tmp_path / "sub" / "grid.png", ["CCO", "xx", "c1ccccc1"], legends=["a", "b", "c"],
                     per_row=2, size=120)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (240, 240) and img.mode == "RGB"
    save_grid(tmp_path / "empty.png", [])
    with Image.open(tmp_path / "empty.png") as img:
        assert img.size == (200, 200)
