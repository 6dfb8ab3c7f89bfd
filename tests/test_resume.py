"""A real run killed mid-round, then resumed, buys no label twice; the lab (CSV) workflow."""
from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter

import pytest

from conftest import seiko_env
from seiko.api import compose, run
from seiko.domains.protein import EhrlichOracle
from seiko.ledger import Ledger
from seiko.oracles import AwaitingLabels


def _seiko(args, cwd):
    return subprocess.run([sys.executable, "-m", "seiko", *args], cwd=cwd, env=seiko_env(),
                          capture_output=True, text=True, timeout=300)


def test_killed_run_resumes_without_buying_any_label_twice(tiny, tmp_path):
    log = tmp_path / "oracle.log"
    base = tiny + ["budget.per_round=[16,24]", "eval.with_oracle=false", f"hydra.run.dir={tmp_path / 'run'}",
                   "oracle._target_=helpers.CountingOracle", f"+oracle.log={log}"]
    # Batches of 8: round 0 takes calls 1-2, round 1 calls 3-5. The 4th call SIGKILLs the process.
    killed = _seiko(base + ["+oracle.crash_at_call=4"], tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        before = {q.id: (q.design, q.value) for q in ledger.queries(labelled=True)}
        assert len(before) == 24 and ledger.completed_rounds() == [0] and len(ledger.pending(1)) == 16
    assert len(log.read_text().splitlines()) == 24

    resumed = _seiko(base + ["resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        after = ledger.queries(labelled=True)
        assert len(after) == 40 and ledger.completed_rounds() == [0, 1] and not ledger.pending()
        assert all(before[q.id] == (q.design, q.value) for q in after if q.id in before)
        labelled_designs = Counter(q.design for q in after)
    delivered = Counter(log.read_text().splitlines())
    assert sum(delivered.values()) == 40  # the oracle labelled exactly what the ledger holds
    assert delivered == labelled_designs


def test_resume_refuses_a_different_config_and_a_missing_run(tiny, tmp_path):
    from seiko.config import ConfigError

    run(compose(tiny + ["strategy=greedy", "budget.per_round=[8]"]), tmp_path)
    with pytest.raises(ConfigError, match="already holds a ledger"):
        run(compose(tiny + ["strategy=greedy", "budget.per_round=[8]"]), tmp_path)
    with pytest.raises(ConfigError, match="config differs"):
        run(compose(tiny + ["strategy=ucb", "budget.per_round=[8]", "resume=true"]), tmp_path)
    with pytest.raises(ConfigError, match="no ledger"):
        run(compose(tiny + ["resume=true"]), tmp_path / "nothing")


def test_a_run_that_fails_to_start_leaves_no_ledger_behind(tiny, tmp_path):
    from seiko.config import ConfigError

    bad = [t for t in tiny if not t.startswith("domain.pretrained")] + [f"domain.pretrained={tmp_path}/none.safetensors"]
    with pytest.raises(ConfigError, match="domain.pretrained: no checkpoint"):
        run(compose(bad), tmp_path / "run")
    assert not (tmp_path / "run" / "ledger.sqlite").exists()
    assert run(compose(tiny + ["budget.per_round=[8]"]), tmp_path / "run")["status"] == "finished"


def test_lab_oracle_exports_csv_and_resumes_after_import(tiny, tmp_path):
    overrides = tiny + ["strategy=greedy", "budget.per_round=[8,8]", "oracle._target_=seiko.oracles.LabOracle"]
    lab = EhrlichOracle(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3, seed=0)
    for round in (0, 1):
        with pytest.raises(AwaitingLabels, match=f"round {round}: 8 queries exported"):
            run(compose(overrides + ([] if round == 0 else ["resume=true"])), tmp_path)
        pending = list(csv.DictReader(open(tmp_path / f"pending_round_{round}.csv")))
        values = lab([row["design"] for row in pending])
        with open(tmp_path / "labels.csv", "w") as f:
            f.write("id,value\n" + "".join(f"{r['id']},{v}\n" for r, v in zip(pending, values)))
        with Ledger(tmp_path / "ledger.sqlite") as ledger:
            assert ledger.import_labels_csv(tmp_path / "labels.csv") == 8
    summary = run(compose(overrides + ["resume=true"]), tmp_path)
    assert summary["status"] == "finished" and summary["queries"] == 16 and summary["rounds"] == 2


def test_a_round_sampled_in_chunks_resumes_from_the_chunks_recorded(tiny, tmp_path):
    """budget.sample_chunk: a run stopped while sampling keeps the chunks it recorded; the
    resumed run proposes only the rest and ends with exactly the designs of an unstopped run."""
    from seiko.api import build_loop

    cfg = tiny + ["strategy=best_of_n", "budget.per_round=[10,10]", "budget.sample_chunk=4"]
    run(compose(cfg), tmp_path / "whole")
    loop = build_loop(compose(cfg), tmp_path / "stopped")
    draws, designs = [], loop.method.designs

    def stopped_at_the_third_chunk(round, num, generator, domain):
        draws.append(num)
        if len(draws) == 3:
            raise KeyboardInterrupt
        return designs(round, num, generator, domain)

    loop.method.designs = stopped_at_the_third_chunk
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    with Ledger(tmp_path / "stopped" / "ledger.sqlite") as ledger:
        assert len(ledger.pending(0)) == 8 and ledger.round_stage(0) is None
    loop.ledger.close()

    run(compose(cfg + ["resume=true"]), tmp_path / "stopped")
    with Ledger(tmp_path / "whole" / "ledger.sqlite") as whole, Ledger(tmp_path / "stopped" / "ledger.sqlite") as resumed:
        expected, got = [q.design for q in whole.queries()], [q.design for q in resumed.queries()]
        assert len(got) == 20 and not resumed.pending() and resumed.completed_rounds() == [0]
    assert got == expected
    assert draws == [4, 4, 4] and got[:4] != got[4:8]  # each chunk from a stream of its own
