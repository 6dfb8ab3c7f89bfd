"""The round display: each round's phases in order on one line (or one log line per phase), a
summary per round, no Lightning bars unless verbose, nothing with progress=false."""
from __future__ import annotations

import io
import re

from seiko.api import compose, run
from seiko.progress import RoundDisplay

PHASES = ["sample", "query", "fit reward", "fine-tune", "evaluate"]


def _overrides(tiny, *extra):
    return [o for o in tiny if not o.startswith("progress=")] + ["strategy=ucb", *extra]


def test_each_round_names_its_phases_in_order_and_ends_with_a_summary(tiny, tmp_path, capsys):
    summary = run(compose(_overrides(tiny, "progress=true")), tmp_path)
    for h in summary["history"]:  # and the round's record says where its time went
        phases = [h[f"seconds_{p}"] for p in ("sample", "query", "update", "evaluate")]
        assert min(phases) >= 0 and h["seconds_update"] > 0 and sum(phases) <= h["seconds"] + 1e-6
    out, err = capsys.readouterr()
    lines = err.splitlines()  # captured stderr is no terminal: plain lines, no carriage returns
    assert "\r" not in err
    for round in (1, 2):
        phases = [m.group(1) for m in (re.match(rf"round {round}/2 \[(.+?)\]", line) for line in lines) if m]
        assert phases == PHASES
        summary = [line for line in lines if line.startswith(f"round {round}/2 done in ")]
        assert len(summary) == 1 and f"queries {16 * round}/32" in summary[0] and "best " in summary[0]
    assert re.search(r"round 2/2 \[fit reward\] \| queries 32/32 \| best \d", err)
    assert "Epoch" not in err + out  # Lightning's per-fit bars stay off


def test_verbose_adds_lightnings_bars(tiny, tmp_path, capsys):
    run(compose(_overrides(tiny, "progress=true", "verbose=true", "budget.per_round=[16]")), tmp_path)
    out, err = capsys.readouterr()
    assert "Epoch 0" in out and "round 1/1 [fit reward]" in err  # Lightning writes its bars to stdout


def test_progress_false_displays_nothing(tiny, tmp_path, capsys):
    run(compose(_overrides(tiny, "progress=false", "budget.per_round=[16]")), tmp_path)
    out, err = capsys.readouterr()
    assert err == "" and "round" not in out


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _drive(display: RoundDisplay) -> None:
    display.start(0, 3, queries=10, budget=30, best=0.25)
    display.phase("query", 10, "queries")
    for done in (4, 8, 10):
        display.advance(done, queries=10 + done)
    display.phase("fit reward")
    display.done({"queries": 20, "best_so_far": 0.5, "eval_reward_mean": 0.125, "feasibility": 1.0})


def test_on_a_terminal_the_round_is_one_line_redrawn_in_place():
    screen = Terminal()
    _drive(RoundDisplay(stream=screen, min_interval=0.0))
    text = screen.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line for the whole round
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0].startswith("round 1/3 [query] 10 queries | queries 10/30 | best 0.25")
    assert frames[1].startswith("round 1/3 [query] 4/10 queries | queries 14/30")
    assert frames[-2].startswith("round 1/3 [fit reward] | queries 20/30")
    assert frames[-1].startswith("round 1/3 done in ") and "best 0.5" in frames[-1] and "mean 0.125" in frames[-1]


def test_only_rank_zero_displays(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    log = io.StringIO()
    _drive(RoundDisplay(stream=log))
    assert log.getvalue() == ""


def test_fits_report_their_epochs_and_steps_to_the_display(tiny, tmp_path):
    from seiko.build import build_loop

    loop = build_loop(compose(_overrides(tiny, "progress=true")), tmp_path)
    screen = Terminal()
    loop.display = RoundDisplay(stream=screen, min_interval=0.0)
    try:
        loop.run_round(0)
    finally:
        loop.ledger.close()
    frames = [frame.split(" | ")[0] for frame in screen.getvalue().split("\r")]
    for frame in ("[query] 8/16 queries", "[fit reward] 5 epochs", "[fit reward] 5/5 epochs", "[fine-tune] 2/2 steps"):
        assert f"round 1/2 {frame}" in frames
