"""The committed pretrained checkpoints: one per Ehrlich chain (domain.seed 0, 1, 2), each loads from
the config and samples its own chain, not another's."""
import pytest
import torch

from seiko.api import compose
from seiko.checkpoint import load_policy, read_spec
from seiko.config import ConfigError
from seiko.diffusion import sample
from seiko.domains.protein import ProteinDomain

MOLECULE_FEASIBILITY = 0.507  # the committed molecule checkpoint's filter pass rate on 2,000 samples (molecule_pretraining.py)


def sample_chain(overrides: list[str], dim: int, chain: int, num: int) -> tuple[dict, float, float]:
    """The config's checkpoint for this chain: its spec, and the feasible share of ``num`` of its
    samples under its own chain and under the next chain's."""
    cfg = compose(overrides)
    assert cfg.domain.pretrained.endswith(f"protein_s32_l{dim}_seed{chain}.safetensors")
    spec = read_spec(cfg.domain.pretrained)
    assert {k: spec["problem"][k] for k in ("num_states", "dim", "seed")} == dict(num_states=32, dim=dim, seed=chain)
    denoiser, family, _ = load_policy(cfg.domain.pretrained)
    tokens = sample(denoiser.eval(), family, num, torch.Generator().manual_seed(0))
    assert tokens.shape == (num, dim)
    own = ProteinDomain(num_states=32, dim=dim, seed=chain).is_feasible(tokens).float().mean()
    other = ProteinDomain(num_states=32, dim=dim, seed=(chain + 1) % 3).is_feasible(tokens).float().mean()
    return spec, float(own), float(other)


@pytest.mark.parametrize("chain", [0, 1, 2])
def test_each_chains_checkpoint_loads_and_samples_its_own_chain(chain):
    spec, own, other = sample_chain([f"domain.seed={chain}"], 32, chain, 400)
    assert spec["pretrain"]["feasibility"] >= 0.9  # what its own pretraining measured on 500+ samples
    assert own >= 0.88, own  # 400 samples: a few points below the 500-sample figure is noise
    assert other < 0.2, other  # another chain forbids other transitions: its samples break it


def test_a_checkpoint_of_another_chain_is_refused(tiny, tmp_path):
    from seiko.api import build_loop

    cfg = compose(["domain.seed=1", "domain.pretrained=${seiko_asset:protein_s32_l32_seed2.safetensors}",
                   "budget.per_round=[8]", "eval.num_samples=0", "progress=false", "logger=none"])
    with pytest.raises(ConfigError, match="seed=2"):
        build_loop(cfg, tmp_path)


def test_the_molecule_checkpoint_loads_from_the_config_and_writes_molecules(tmp_path):
    """Its measured filter pass rate is low (docs/molecule-benchmark.md, 'Pretraining'): the test
    holds it to what was measured, so a worse rebuild or a broken loader fails."""
    from seiko.domains import MoleculeDomain

    cfg = compose(["domain=molecule"])
    spec = read_spec(cfg.domain.pretrained)
    assert spec["problem"]["representation"] == "selfies" and spec["family"]["order"] == "left_to_right"
    denoiser, family, _ = load_policy(cfg.domain.pretrained)
    tokens = sample(denoiser.eval(), family, 200, torch.Generator().manual_seed(0))
    domain = MoleculeDomain()
    smiles = domain.decode(tokens)
    assert sum(bool(s) for s in smiles) >= 198 and len(set(smiles)) >= 195  # valid, unique
    assert domain.is_feasible(tokens).float().mean() >= MOLECULE_FEASIBILITY - 0.08
    with pytest.raises(ConfigError, match="representation=selfies"):
        from seiko.api import build_loop

        build_loop(compose(["domain=molecule", "domain.representation=smiles", "domain.denoiser.vocab_size=25",
                            f"domain.pretrained={cfg.domain.pretrained}"]), tmp_path)


def test_the_holo_bench_size_checkpoint_loads_and_samples_its_chain():
    """Length 256 (holo-bench's size, `make pretrain-holo`): held to the feasibility its own
    pretraining measured, on fewer samples, since a sample costs 256 denoiser passes."""
    spec, own, other = sample_chain(["domain.dim=256", "domain.motif_length=8", "domain.quantization=8"], 256, 0, 64)
    measured = spec["pretrain"]["feasibility"]
    assert own >= measured - 0.15, (own, measured)  # 64 samples: a binomial spread of about 0.06
    assert other == 0.0, other  # 255 transitions of another chain: none survives
