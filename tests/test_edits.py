"""Acquisition-ranked single-token edits (edits.fraction): allowed tokens, best edit, in the loop."""
import math
import sqlite3

import pytest

import torch
from torch import nn

from seiko.diffusion import MaskedDiffusion
from seiko.edits import allowed_substitutions, best_edits, best_new_edits, block_edits, climb, single_edits, supported

V, L = 4, 5


class FixedReference(nn.Module):
    """Logits independent of the input: token 0 likely, token 2 at ~1%, tokens 1 and 3 at ~1e-5."""

    def forward(self, x, t):
        logits = torch.log(torch.tensor([0.99, 1e-5, 0.01, 1e-5]))
        return logits.expand(x.shape[0], x.shape[1], V)


def test_allowed_tokens_are_those_the_reference_gives_at_least_eps_and_new():
    tokens = torch.tensor([[0, 0, 2, 0, 1]])
    allowed = allowed_substitutions(FixedReference(), MaskedDiffusion(V, L), tokens, eps=1e-3)
    assert allowed.shape == (1, L, V)
    for pos, here in enumerate(tokens[0].tolist()):
        expected = {t for t in (0, 2) if t != here}
        assert set(allowed[0, pos].nonzero().flatten().tolist()) == expected


def test_each_design_takes_its_best_edit_only_when_it_scores_higher():
    tokens = torch.tensor([[0, 0, 0, 0, 0], [2, 2, 2, 2, 2]])
    allowed = torch.zeros(2, L, V, dtype=torch.bool)
    allowed[:, :, 2] = True
    allowed[1] = False  # the second design may not change
    score = lambda t: (t == 2).float().sum(-1) + 0.1 * (t[:, 0] == 2).float()  # noqa: E731
    edited = best_edits(tokens, allowed, score)
    assert edited[0].tolist() == [2, 0, 0, 0, 0]  # one edit, at the best position
    assert torch.equal(edited[1], tokens[1])
    worse = best_edits(tokens[:1], allowed[:1], lambda t: -(t == 2).float().sum(-1))
    assert torch.equal(worse, tokens[:1])  # no edit beats the design: it stays


def test_climb_takes_edits_in_turn_and_stops_where_none_helps():
    """Score: tokens matching a target. Each step fixes one position; steps cap the climb."""
    target = torch.tensor([2, 0, 2, 2, 0])
    tokens = torch.tensor([[0, 0, 0, 0, 0], [2, 0, 2, 2, 0]])
    score = lambda t: (t == target).float().sum(-1)  # noqa: E731
    family = MaskedDiffusion(V, L)
    two = climb(tokens, FixedReference(), family, 1e-3, score, steps=2)
    assert (two[0] == target).sum() == 2 + 2  # two already right, two fixed
    assert torch.equal(two[1], target)  # already the best: unchanged
    assert torch.equal(climb(tokens, FixedReference(), family, 1e-3, score, steps=10)[0], target)
    one = climb(tokens, FixedReference(), family, 1e-3, score, steps=1)
    assert torch.equal(one, best_edits(tokens, allowed_substitutions(FixedReference(), family, tokens, 1e-3), score))


def test_log_floor_fits_the_reward_model_to_log_labels(tiny, tmp_path):
    """reward.log_floor: the model's targets are log(max(label, floor)), infeasible ones at the floor."""
    import numpy as np

    from seiko.api import build_loop, compose

    loop = build_loop(compose(tiny + ["strategy=greedy", "reward.log_floor=0.01"]), tmp_path)
    designs = loop.method.propose(0, 6, torch.Generator().manual_seed(0))
    values = np.array([0.5, 0.001, np.nan, 0.2, 1.0, 0.04])
    objective = loop.method.fit_objective(0, designs, values)
    expected = np.log([0.5, 0.01, 0.01, 0.2, 1.0, 0.04])  # nan -> infeasible_value 0 -> floor
    model = objective.model
    np.testing.assert_allclose((model.y_train * model.y_std + model.y_mean).numpy(), expected, rtol=1e-5)
    assert objective.scale == pytest.approx(np.std(expected), rel=1e-6)


def designs_by_round(run_dir):
    rows = sqlite3.connect(run_dir / "ledger.sqlite").execute("select round, design from queries order by id")
    out = {}
    for round, design in rows:
        out.setdefault(round, []).append(design)
    return out


def test_edited_rounds_are_the_plain_rounds_with_single_token_edits(tiny, tmp_path):
    """Same seed with and without edits: round 0 (nothing fitted) is identical; later, the first
    half of each round's designs are one token from the plain samples and the rest identical."""
    from seiko.api import compose, run

    base = tiny + ["strategy=greedy", "budget.per_round=[16,16]"]
    run(compose(base), tmp_path / "plain")
    summary = run(compose(base + ["edits.fraction=0.5"]), tmp_path / "edited")
    assert summary["status"] == "finished" and summary["queries"] == 32
    plain, edited = designs_by_round(tmp_path / "plain"), designs_by_round(tmp_path / "edited")
    assert plain[0] == edited[0]
    assert plain[1][8:] == edited[1][8:]
    distances = [sum(a != b for a, b in zip(p, e)) for p, e in zip(plain[1][:8], edited[1][:8])]
    assert max(distances) <= 1 and sum(distances) > 0, distances


def test_restarts_are_new_single_edits_of_the_best_labels(tiny, tmp_path):
    """edits.restarts=0.5: half of round 1 are one token from the round-0 designs with the best
    labels, each a design no label has yet, and no two alike."""
    from seiko.api import compose, run

    run(compose(tiny + ["strategy=greedy", "budget.per_round=[16,16]", "edits.restarts=0.5"]), tmp_path)
    rows = sqlite3.connect(tmp_path / "ledger.sqlite").execute("select round, design, value from queries order by id")
    rounds = {}
    for round, design, value in rows:
        rounds.setdefault(round, []).append((design, float(value) if value is not None else float("nan")))
    labelled = sorted({d: v for d, v in rounds[0] if math.isfinite(v)}.items(), key=lambda kv: -kv[1])
    count = min(8, len(labelled))  # infeasible designs (-inf) are no starting point
    assert count >= 4
    restarts = [d for d, _ in rounds[1][:count]]
    assert len(set(restarts)) == count and not set(restarts) & {d for d, _ in rounds[0]}
    cutoff = labelled[count - 1][1]  # ties at the cutoff may be taken in any order
    for design in restarts:
        assert any(sum(a != b for a, b in zip(design, start)) == 1 for start, v in labelled if v >= cutoff)


def test_each_design_gives_its_best_new_edits_in_order_up_to_the_limit():
    tokens = torch.tensor([[0, 0, 0, 0, 0], [2, 2, 2, 2, 2]])
    allowed = torch.zeros(2, L, V, dtype=torch.bool)
    allowed[0, :, 2] = True
    allowed[1, :, 0] = True
    score = lambda t: (t == 2).float().sum(-1) + 0.1 * torch.arange(L).flip(0).mul(t == 2).sum(-1)  # noqa: E731
    taken = {torch.tensor([2, 0, 0, 0, 0]).numpy().tobytes()}  # the first design's best edit is labelled
    cands = [single_edits(t, a) for t, a in zip(tokens, allowed)]
    edits = best_new_edits(tokens, cands, score, taken, per=2, limit=3)
    assert edits.tolist() == [[0, 2, 0, 0, 0], [0, 0, 2, 0, 0],  # the next two of the first design
                              [2, 2, 2, 2, 0]]                    # then the second's best, up to 3 in all
    assert {e.numpy().tobytes() for e in edits} <= taken  # now labelled-to-be
    assert len(best_new_edits(tokens[:1], [tokens[:0]], score, taken)) == 0  # no edit: none


def test_a_check_skips_edits_it_refuses_and_the_next_best_take_their_place():
    tokens = torch.tensor([[0, 0, 0, 0, 0]])
    allowed = torch.zeros(1, L, V, dtype=torch.bool)
    allowed[0, :, 2] = True
    score = lambda t: 0.1 * torch.arange(L).flip(0).mul(t == 2).sum(-1)  # noqa: E731  (earlier 2s score higher)
    asked = []

    def check(b, edits):
        asked.append(len(edits))
        return edits[:, 1] != 2  # refuse a 2 at position 1

    edits = best_new_edits(tokens, [single_edits(tokens[0], allowed[0])], score, set(), per=2, check=check)
    assert edits.tolist() == [[2, 0, 0, 0, 0], [0, 0, 2, 0, 0]]
    assert asked == [L]  # every candidate of this small design in one batch, in score order


def test_block_edits_are_runs_and_copies_and_include_every_single_edit():
    design = torch.tensor([0, 1, 2, 3, 0])
    blocks = block_edits(design, 3, V)
    rows = {tuple(r) for r in blocks.tolist()}
    assert len(rows) == len(blocks) and tuple(design.tolist()) not in rows  # distinct, all changed
    singles = single_edits(design, torch.nn.functional.one_hot(design, V) == 0)
    assert {tuple(r) for r in singles.tolist()} <= rows
    assert (3, 3, 3, 3, 0) in rows  # a run of 3 over positions 0-2
    assert (0, 1, 2, 1, 2) in rows  # the block [1, 2] copied to positions 3-4
    assert (0, 0, 1, 2, 0) in rows  # [0, 1, 2] copied one place on (a shift)
    assert not any(sum(a != b for a, b in zip(r, design.tolist())) > 3 for r in rows)
    assert {tuple(r) for r in block_edits(design, 1, V).tolist()} == {tuple(r) for r in singles.tolist()}
    with pytest.raises(ValueError, match="block width"):
        block_edits(design, L + 1, V)


def test_a_block_edit_is_supported_when_every_token_it_places_is_allowed_there():
    """FixedReference allows tokens 0 and 2 (>= 1e-3) anywhere, never 1 or 3."""
    design = torch.tensor([1, 3, 0, 0, 0])
    cands = torch.tensor([[1, 3, 2, 2, 0],   # places 2s: allowed
                          [1, 3, 3, 0, 0],   # places a 3: refused
                          [0, 0, 0, 0, 0],   # replaces the 1 and 3 it had: allowed
                          [1, 3, 1, 3, 0]])  # copies [1, 3]: refused, whatever the design held
    ok = supported(FixedReference(), MaskedDiffusion(V, L), design, cands, eps=1e-3)
    assert ok.tolist() == [True, False, True, False]
    allowed = allowed_substitutions(FixedReference(), MaskedDiffusion(V, L), design[None], 1e-3)[0]
    singles = single_edits(design, torch.nn.functional.one_hot(design, V) == 0)
    assert supported(FixedReference(), MaskedDiffusion(V, L), design, singles, 1e-3).sum() == allowed.sum()


def test_per_restart_spends_the_restarts_on_the_few_best_labels(tiny, tmp_path):
    """edits.per_restart=4: round 1's 8 restarts are 4 new edits of each of the 2 best labels."""
    from seiko.api import compose, run

    run(compose(tiny + ["strategy=greedy", "budget.per_round=[16,16]", "edits.restarts=0.5",
                        "edits.per_restart=4"]), tmp_path)
    rows = sqlite3.connect(tmp_path / "ledger.sqlite").execute("select round, design, value from queries order by id")
    rounds = {}
    for round, design, value in rows:
        rounds.setdefault(round, []).append((design, float(value) if value is not None else float("nan")))
    labelled = sorted({d: v for d, v in rounds[0] if math.isfinite(v)}.items(), key=lambda kv: -kv[1])
    restarts = [d for d, _ in rounds[1][:8]]
    assert len(set(restarts)) == 8 and not set(restarts) & {d for d, _ in rounds[0]}
    parents = [[s for s, _ in labelled if sum(a != b for a, b in zip(d, s)) == 1] for d in restarts]
    assert all(parents)
    top = {s for s, v in labelled if v >= labelled[1][1]}  # the two best (ties at the second in any order)
    first, second = set(parents[0]) & top, set(parents[4]) & top
    assert all(set(p) & first for p in parents[:4]) and all(set(p) & second for p in parents[4:])


def test_block_restarts_move_blocks_of_the_best_labels(tiny, tmp_path):
    """edits.blocks=3: round 1's restarts differ from a best round-0 label in at most 3
    consecutive positions, some in more than one, and none was labelled before."""
    from seiko.api import compose, run

    run(compose(tiny + ["strategy=greedy", "budget.per_round=[16,16]", "edits.restarts=0.5",
                        "edits.per_restart=4", "edits.blocks=3"]), tmp_path)
    rounds = designs_by_round(tmp_path)
    restarts = rounds[1][:8]
    assert len(set(restarts)) == 8 and not set(restarts) & set(rounds[0])

    def span(a, b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return diff[-1] - diff[0] + 1 if diff else 0
    spans = [min(span(d, s) or 99 for s in rounds[0]) for d in restarts]
    assert max(spans) <= 3 and max(spans) > 1, spans


def test_blocks_longer_than_the_designs_are_refused(tiny, tmp_path):
    from seiko.api import build_loop, compose
    from seiko.config import ConfigError

    with pytest.raises(ConfigError, match="edits.blocks"):
        build_loop(compose(tiny + ["edits.restarts=0.5", "edits.blocks=999"]), tmp_path)


def test_resume_refits_the_objective_that_edits_need(tiny, tmp_path):
    from seiko.api import build_loop, compose

    cfg = compose(tiny + ["strategy=greedy", "edits.fraction=0.5", "budget.per_round=[16,16]"])
    loop = build_loop(cfg, tmp_path)
    loop.run_round(0)
    again = build_loop(compose(tiny + ["strategy=greedy", "edits.fraction=0.5", "budget.per_round=[16,16]",
                                       "resume=true"]), tmp_path)
    assert again.method.objective is None
    assert again._restore() == 1
    assert again.method.objective is not None  # refitted from the ledger, so round 1 is edited too


@pytest.mark.parametrize("override, field", [("edits.fraction=0.5", "edits.fraction"),
                                             ("edits.restarts=0.5", "edits.restarts")])
def test_token_edits_on_a_gaussian_family_fail_naming_the_field(override, field, tiny):
    from seiko.api import compose
    from seiko.build import edit_settings
    from seiko.config import ConfigError
    from seiko.diffusion import GaussianDiffusion

    with pytest.raises(ConfigError, match=f"^{field}: token edits need categorical"):
        edit_settings(compose(tiny + [override]), GaussianDiffusion((2,), num_steps=10))
    assert edit_settings(compose(tiny + [override]), MaskedDiffusion(V, L))[f"edit_{field.split('.')[1]}"] == 0.5


def test_stalled_rounds_count_the_rounds_since_the_best_label_rose():
    import numpy as np

    from seiko.methods import best_rose, stalled_rounds

    nan = float("nan")
    values = np.array([0.1, 0.3, 0.2, nan, 0.3, 0.5, 0.4, 0.1])
    rounds = np.array([0, 0, 1, 1, 2, 3, 4, 4])  # rises in rounds 0 and 3; a tie (round 2) is no rise
    assert stalled_rounds(values, rounds) == 1
    assert stalled_rounds(values[rounds <= 2], rounds[rounds <= 2]) == 2
    assert stalled_rounds(values[rounds <= 3], rounds[rounds <= 3]) == 0
    assert not best_rose(np.array([0.3, nan]), np.array([False, True]))  # a round of failed labels
    assert best_rose(np.array([nan, 0.0]), np.array([False, True]))  # the first finite label


def test_focus_closes_the_restarts_in_on_the_best_label_after_stalled_rounds(tiny, tmp_path):
    """edits.focus=4, per_restart=2: 8 restarts are edits of 4 designs while the best label
    rises, and all 8 edits of the best design after one stalled round (per_restart 2 * 4)."""
    import numpy as np

    from seiko.api import build_loop, compose
    from seiko.methods import stalled_rounds

    settings = tiny + ["strategy=greedy", "budget.per_round=[16,16,16]", "edits.restarts=0.5",
                       "edits.per_restart=2", "edits.focus=4"]
    loop = build_loop(compose(settings), tmp_path)
    loop.run_round(0)
    loop.run_round(1)
    method = loop.method
    _, values, rounds = loop._labels()
    assert method.stalled == stalled_rounds(values, rounds)
    resumed = build_loop(compose(settings + ["resume=true"]), tmp_path)
    resumed._restore()
    assert resumed.method.stalled == method.stalled  # a resumed run counts the same from the ledger

    designs, values = method.labelled
    best = designs[int(np.nanargmax(values))]
    near_best = lambda edits: int(((edits != best).sum(-1) == 1).sum())  # noqa: E731
    method.stalled = 0
    spread = method.restarts(8)
    method.stalled = 1
    focused = method.restarts(8)
    assert len(spread) == len(focused) == 8
    assert near_best(focused) == 8 and near_best(spread) <= 2


def test_edits_reach_below_the_support_eps_of_the_policy(tiny, tmp_path):
    """finetune.support_eps=0.05 with edits.eps=1e-3: the edits ask the pretrained network
    itself, so they may place tokens at 1e-3..0.05 that the support-constrained policy hides."""
    from seiko.api import build_loop, compose
    from seiko.diffusion import SupportConstrained

    loop = build_loop(compose(tiny + ["finetune.support_eps=0.05", "edits.restarts=0.5", "edits.eps=0.001"]), tmp_path)
    method = loop.method
    assert isinstance(method.pretrained, SupportConstrained)
    tokens = method.sample(8, torch.Generator().manual_seed(0))
    raw = allowed_substitutions(method.pretrained.reference, method.family, tokens, 1e-3)
    constrained = allowed_substitutions(method.pretrained, method.family, tokens, 1e-3)
    used = allowed_substitutions(method.edit_reference, method.family, tokens, method.edit_eps)
    assert torch.equal(used, raw)
    assert constrained.sum() < raw.sum()  # the policy's mask would have hidden these edits
