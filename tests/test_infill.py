"""Infilled proposals (edits.moves=infill): the round's policy fills re-masked positions of labelled designs."""
import sqlite3

import pytest
import torch
from torch import nn

from helpers import gen
from seiko.diffusion import MaskedDiffusion, sample
from seiko.domains.protein import ChainPosteriorDenoiser, ProteinDomain
from seiko.infill import InfillMoves, remask


class OneToken(nn.Module):
    """A policy that puts all its mass on one token everywhere."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.vocab, self.token = vocab, token

    def forward(self, x, t):
        logits = torch.full((*x.shape[:2], self.vocab), -30.0)
        logits[..., self.token] = 0.0
        return logits


def test_remask_takes_1_to_masked_positions_as_spans_or_anywhere():
    masks = remask(4000, 20, 5, span=0.0, generator=gen(0))
    counts = masks.sum(-1)
    assert counts.min() == 1 and counts.max() == 5
    assert set(counts.tolist()) == {1, 2, 3, 4, 5}
    spans = remask(2000, 20, 5, span=1.0, generator=gen(1))
    for row in spans:
        where = row.nonzero().flatten()
        assert where[-1] - where[0] + 1 == len(where)  # contiguous
    assert spans[:, 0].any() and spans[:, -1].any()  # a span may start at either end
    scattered = [row.nonzero().flatten() for row in masks if row.sum() >= 3]
    assert any(w[-1] - w[0] + 1 > len(w) for w in scattered)  # not all contiguous
    with pytest.raises(ValueError, match="edits.masked"):
        remask(1, 4, 5, 0.5)


class Uniform(nn.Module):
    def forward(self, x, t):
        return torch.zeros(*x.shape[:2], 8)


def test_fills_keep_the_unmasked_positions_and_take_the_policys_tokens():
    family = MaskedDiffusion(6, 10)
    tokens = torch.randint(5, (50, 10), generator=gen(0))  # tokens 0..4: token 5 is the policy's
    masks = remask(50, 10, 4, 0.5, gen(1))
    filled = family.infill(OneToken(6, 5), tokens, masks, gen(2))
    assert torch.equal(filled[~masks], tokens[~masks])
    assert (filled[masks] == 5).all()


def test_fills_of_feasible_designs_stay_feasible_under_the_exact_posterior():
    """The chain's exact conditionals as the policy: every fill of a feasible design is feasible,
    and the fills do change the designs."""
    domain = ProteinDomain(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3, seed=0)
    family, exact = MaskedDiffusion(8, 12), ChainPosteriorDenoiser(domain)
    starts = domain.pretraining_data(40, gen(0))
    assert domain.is_feasible(starts).all()
    moves = InfillMoves(masked=6, span=0.5)
    fills = moves.fills(exact, family, starts, 32, gen(1))
    assert fills.shape == (40, 32, 12)
    assert domain.is_feasible(fills.reshape(-1, 12)).all()
    assert (fills != starts.unsqueeze(1)).any(-1).float().mean() > 0.5
    # the check is not vacuous: uniform fills of the same re-maskings break the chain
    uniform = family.infill(Uniform(), starts.repeat(8, 1), remask(320, 12, 6, 0.5, gen(2)), gen(3))
    assert domain.is_feasible(uniform).float().mean() < 0.9


def test_fills_change_with_the_policy():
    family = MaskedDiffusion(6, 10)
    starts = torch.zeros(8, 10, dtype=torch.long)
    a = InfillMoves(candidates=4, masked=3)(OneToken(6, 3), family, starts, gen(0), keep=4)
    b = InfillMoves(candidates=4, masked=3)(OneToken(6, 4), family, starts, gen(0), keep=4)
    assert all(set(f.unique().tolist()) == {0, 3} for f in a)
    assert all(set(f.unique().tolist()) == {0, 4} for f in b)
    assert all(len(f) and (f != starts[0]).any(-1).all() for f in a)  # distinct and changed


def test_improve_takes_the_best_fill_only_when_it_scores_higher():
    family = MaskedDiffusion(6, 10)
    designs = torch.zeros(4, 10, dtype=torch.long)
    moves = InfillMoves(candidates=8, masked=2, span=0.0)
    more = moves.improve(OneToken(6, 2), family, designs, lambda t: (t == 2).float().sum(-1), gen(0))
    assert ((more == 2).sum(-1) >= 1).all() and ((more != 0) & (more != 2)).sum() == 0
    fewer = moves.improve(OneToken(6, 2), family, designs, lambda t: -(t == 2).float().sum(-1), gen(0))
    assert torch.equal(fewer, designs)


def test_masked_diffusion_samples_are_unchanged_by_infill_support():
    """infill is a separate path: the full sampler still draws from the exact posterior."""
    domain = ProteinDomain(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3, seed=0)
    drawn = sample(ChainPosteriorDenoiser(domain), MaskedDiffusion(8, 12), 64, gen(0))
    assert domain.is_feasible(drawn).all()


def _rounds(path):
    rows = sqlite3.connect(path / "ledger.sqlite").execute("select round, design, value from queries order by id")
    out = {}
    for round, design, value in rows:
        out.setdefault(round, []).append(design)
    return out


def test_infilled_restarts_are_new_fills_of_the_best_labels(tiny, tmp_path):
    """edits.moves=infill: round 1's restarts differ from a round-0 design in at most edits.masked
    positions, none was labelled before, and none repeats."""
    from seiko.api import compose, run

    run(compose(tiny + ["strategy=greedy", "budget.per_round=[16,16]", "edits.restarts=0.5", "edits.per_restart=4",
                        "edits.moves=infill", "edits.masked=2", "edits.candidates=8"]), tmp_path)
    rounds = _rounds(tmp_path)
    restarts = rounds[1][:8]
    assert len(set(restarts)) == 8 and not set(restarts) & set(rounds[0])
    distance = [min(sum(a != b for a, b in zip(d, s)) for s in rounds[0]) for d in restarts]
    assert 1 <= min(distance) and max(distance) <= 2, distance


def test_infilled_fraction_edits_change_fresh_samples_by_at_most_masked(tiny, tmp_path):
    from seiko.api import compose, run

    common = tiny + ["strategy=greedy", "budget.per_round=[16,16]"]
    run(compose(common), tmp_path / "plain")
    run(compose(common + ["edits.fraction=0.5", "edits.moves=infill", "edits.masked=3"]), tmp_path / "infill")
    plain, edited = _rounds(tmp_path / "plain")[1], _rounds(tmp_path / "infill")[1]
    assert plain[8:] == edited[8:]  # the unedited half is the same draw
    distances = [sum(a != b for a, b in zip(p, e)) for p, e in zip(plain[:8], edited[:8])]
    assert max(distances) <= 3 and sum(distances) > 0, distances


@pytest.mark.parametrize("override, field", [("edits.moves=mutate", "edits.moves"), ("edits.masked=0", "edits.masked"),
                                             ("edits.candidates=0", "edits.candidates"), ("edits.span=1.5", "edits.span")])
def test_bad_infill_settings_fail_naming_the_field(override, field, tiny):
    from seiko.api import compose
    from seiko.config import ConfigError

    with pytest.raises(ConfigError, match=field):
        compose(tiny + ["edits.restarts=0.5", override])


def test_more_masked_positions_than_the_design_has_are_refused(tiny, tmp_path):
    from seiko.api import build_loop, compose
    from seiko.config import ConfigError

    with pytest.raises(ConfigError, match="edits.masked"):
        build_loop(compose(tiny + ["edits.restarts=0.5", "edits.moves=infill", "edits.masked=99"]), tmp_path)
