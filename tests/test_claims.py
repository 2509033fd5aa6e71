"""Claims on units shared by workers: exclusive, taken over when stale, released; no training."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vacnn_tf.training.claims import Claims, UnitsHeld, claims_dir, read_claim
from vacnn_tf.training.run_dirs import Manifest, mark_done


class Clock:
    """A time.time() the test moves."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _worker(clock: Clock, name: str = "", timeout: float = 60.0) -> Claims:
    return Claims(name, timeout=timeout, heartbeat=timeout / 4, clock=clock)


def test_a_unit_is_held_by_one_worker_at_a_time(tmp_path: Path):
    clock = Clock()
    unit = tmp_path / "run" / "fold_0"
    a, b = _worker(clock, "a"), _worker(clock, "b")
    assert a.claim(unit)
    assert not b.claim(unit)
    assert b.holder(unit).owner == a.owner and a.holds(unit) and not b.holds(unit)
    info = read_claim(claims_dir(unit) / "000001.json")
    assert (info.host, info.pid, info.generation) == (a.host, a.pid, 1)
    assert claims_dir(unit) == tmp_path / "run" / ".fold_0.claims"  # beside the unit, not in it
    a.close()
    b.close()


def test_a_stale_claim_is_taken_over_and_its_old_owner_learns_it_lost(tmp_path: Path):
    clock = Clock()
    unit = tmp_path / "fold_0"
    a, b = _worker(clock, "a", timeout=60), _worker(clock, "b", timeout=60)
    assert a.claim(unit)
    clock.now += 30
    assert not b.claim(unit)  # still fresh
    a.beat()
    clock.now += 59
    assert not b.claim(unit)  # the heartbeat renewed it
    clock.now += 61
    assert b.claim(unit)  # a went silent past the timeout
    assert [p.name for p in claims_dir(unit).glob("*.json")] == ["000002.json"]
    assert b.holds(unit) and not a.holds(unit)
    a.beat()  # a's heartbeat finds the newer generation and leaves b's claim alone
    assert read_claim(claims_dir(unit) / "000002.json").owner == b.owner
    a.release(unit, finished=False)
    assert b.holds(unit)
    a.close()
    b.close()


def test_a_claim_of_an_exited_process_on_this_host_is_free_at_once(tmp_path: Path):
    clock = Clock()
    unit = tmp_path / "fold_0"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    a = _worker(clock)
    assert a.claim(unit)
    path = claims_dir(unit) / "000001.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "pid": int(dead.stdout), "owner": "crashed"}))
    b = _worker(clock)
    assert b.claim(unit)  # no waiting for the timeout
    a.close()
    b.close()


def test_release_unfinished_frees_the_unit_and_finished_removes_the_claims(tmp_path: Path):
    clock = Clock()
    unit = tmp_path / "fold_0"
    a, b = _worker(clock), _worker(clock)
    assert a.claim(unit) and a.claim(unit)  # nested: the pretraining a fold's worker trains itself
    a.release(unit, finished=False)
    assert not b.claim(unit)  # still held by the outer claim
    a.release(unit, finished=False)
    assert read_claim(claims_dir(unit) / "000001.json").released
    assert b.claim(unit)
    b.release(unit, finished=True)
    assert not claims_dir(unit).exists()
    a.close()
    b.close()


def test_hold_skips_a_unit_finished_meanwhile_and_frees_it_after_an_error(tmp_path: Path):
    clock = Clock()
    unit = tmp_path / "fold_0"
    done = lambda p: (p / "DONE").is_file()  # noqa: E731
    a, b = _worker(clock), _worker(clock)
    with pytest.raises(RuntimeError):
        with a.hold(unit, done) as mine:
            assert mine
            raise RuntimeError("the training failed")
    with b.hold(unit, done) as mine:  # taken again at once
        assert mine
        mark_done(unit)
    assert not claims_dir(unit).exists()
    with a.hold(unit, done) as mine:  # finished: nothing to do, nothing left claimed
        assert not mine
    assert not claims_dir(unit).exists()
    a.close()
    b.close()


def test_of_many_workers_racing_for_a_unit_exactly_one_wins(tmp_path: Path):
    clock = Clock()
    unit = tmp_path / "fold_0"
    workers = [_worker(clock, str(k)) for k in range(16)]
    start = threading.Barrier(len(workers))
    won: list[bool] = [False] * len(workers)

    def race(k: int) -> None:
        start.wait()
        won[k] = workers[k].claim(unit)

    threads = [threading.Thread(target=race, args=(k,)) for k in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    # and when the winner goes silent, the takeover is won by exactly one of the rest
    clock.now += 3600
    start = threading.Barrier(len(workers) - 1)
    losers = [k for k in range(len(workers)) if not won[k]]
    won = [False] * len(workers)
    threads = [threading.Thread(target=race, args=(k,)) for k in losers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    assert len(list(claims_dir(unit).glob("*.json"))) == 1
    for w in workers:
        w.close()


def test_the_heartbeat_thread_keeps_a_claim_fresh(tmp_path: Path):
    unit = tmp_path / "fold_0"
    with Claims(timeout=0.5, heartbeat=0.05) as a:
        assert a.claim(unit)
        first = read_claim(claims_dir(unit) / "000001.json").heartbeat
        threading.Event().wait(0.3)
        assert read_claim(claims_dir(unit) / "000001.json").heartbeat > first
    # close released it
    assert read_claim(claims_dir(unit) / "000001.json").released


def test_units_held_merges_and_says_whether_to_wait():
    merged = UnitsHeld.merge([UnitsHeld(["a"], waiting=False), UnitsHeld(["b", "c"], waiting=True)])
    assert merged.keys == ["a", "b", "c"] and merged.waiting
    assert not UnitsHeld.merge([UnitsHeld(["a"], waiting=False)]).waiting


def test_manifests_of_workers_sharing_a_run_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two sessions save one manifest in turn: stage times add up, each one's entries stay."""
    from vacnn_tf.config import RunConfig
    from vacnn_tf.training import run_dirs

    monkeypatch.setattr(run_dirs, "package_versions", lambda: {})  # importing TensorFlow to name it is beside the point
    run = tmp_path / "run"
    run.mkdir()
    a = Manifest.open(run, RunConfig(), "finetune")
    b = Manifest.open(run, RunConfig(), "finetune")
    a.data["stages_seconds"]["fold_0"] = 2.0
    a.data.setdefault("pretrained", {})["0"] = "P"
    a.save()
    b.data["stages_seconds"]["fold_1"] = 3.0
    b.data["stages_seconds"]["load"] = 1.5
    b.data.setdefault("pretrained", {})["1"] = "P"
    b.save()
    a.data["stages_seconds"]["load"] = 1.0
    a.save()
    disk = json.loads((run / "manifest.json").read_text())
    assert disk["sessions"] == 2
    assert disk["stages_seconds"] == {"fold_0": 2.0, "fold_1": 3.0, "load": 2.5}
    assert disk["pretrained"] == {"0": "P", "1": "P"}
    assert not list(run.glob(".*lock"))
