"""Claims on units of work in a shared folder: which of several worker processes trains a unit.

A *unit* is a directory one training writes (a pretraining run, a fold ``RUN/fold_K``, or a
fine-tuning run's own summary). Workers on one machine or on many, sharing the run folders over
any filesystem, agree on who trains a unit without a scheduler:

* A claim is a file ``GEN.json`` in ``.NAME.claims/`` beside the unit, holding its owner (host,
  pid, a token) and a heartbeat timestamp. It is made complete under a temporary name and then
  ``os.link``-ed into place: a link fails when the name exists, on local disks and NFS alike, so
  of several workers making the same file exactly one succeeds.
* Generations: the claim with the highest number is the one in force. A claim whose heartbeat
  is older than ``timeout`` seconds (its worker died or hung), whose owner ran on this host and
  has exited, or that was released unfinished, is *stale*: a worker takes it over by making the
  next generation, which again only one worker can make. Files are never rewritten into a lower
  generation, so a takeover can neither be undone nor happen twice.
* The owner rewrites its claim's heartbeat every ``heartbeat`` seconds from a background thread
  and notices when a newer generation appeared (it was paused past the timeout and lost the
  unit: :meth:`Claims.holds` turns False and training stops at the next epoch).
* A finished unit's claims folder is removed; whoever claims a unit then checks it is not
  finished already, since the folder of a finished unit can be made again by a late worker.

The clocks of the machines sharing a folder must agree to well within ``timeout`` (NTP does).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

DEFAULT_TIMEOUT = 600.0  # seconds without a heartbeat before a claim counts as abandoned
DEFAULT_HEARTBEAT = 30.0


class UnitsHeld(RuntimeError):
    """Work left that this worker cannot do now: units held by other live workers.

    Attributes:
        keys: The units held elsewhere, or waiting for a unit held elsewhere.
        waiting: True when some of them wait for a unit another worker holds (a fold whose
            pretraining is training elsewhere): this worker can do them once that ends. False
            when every one of them is itself in another worker's hands.
    """

    def __init__(self, keys: list[str], waiting: bool) -> None:
        super().__init__(f"{len(keys)} unit(s) held by other workers: {', '.join(keys[:3])}"
                         + (" ..." if len(keys) > 3 else ""))
        self.keys = list(keys)
        self.waiting = waiting

    @classmethod
    def merge(cls, errors: list["UnitsHeld"]) -> "UnitsHeld":
        return cls([k for e in errors for k in e.keys], any(e.waiting for e in errors))


class ClaimLost(RuntimeError):
    """Another worker took over a unit this worker was training (its heartbeat stopped past the timeout)."""


@dataclass(frozen=True)
class ClaimInfo:
    """What one claim file holds."""

    owner: str  # host:pid:token, unique per Claims object
    host: str
    pid: int
    unit: str
    generation: int
    claimed: float  # time.time() when claimed
    heartbeat: float  # time.time() of the last heartbeat
    released: bool = False  # given up unfinished: free to take at once
    pidns: str = ""  # the owner's process-id namespace: its pid means something only within it


def claims_dir(unit: str | Path) -> Path:
    """``.NAME.claims`` beside the unit directory (outside it, so the unit's own files are untouched)."""
    unit = Path(unit)
    return unit.parent / f".{unit.name}.claims"


def _generations(folder: Path) -> list[int]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


def _gen_path(folder: Path, generation: int) -> Path:
    return folder / f"{generation:06d}.json"


def read_claim(path: Path) -> Optional[ClaimInfo]:
    """The claim in ``path``; None when it went meanwhile. A file that does not parse (written
    by a filesystem without hard links, caught half way) counts with its mtime as heartbeat."""
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        return ClaimInfo(**json.loads(text))
    except (ValueError, TypeError):
        return ClaimInfo("?", "?", -1, str(path), int(path.stem), mtime, mtime)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _publish(path: Path, info: ClaimInfo) -> bool:
    """Make ``path`` hold ``info`` if no such file exists yet; False when another worker's is there."""
    tmp = path.with_name(f".{path.name}.{info.owner.replace(':', '_')}.tmp")
    tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: exclusive create, then the content
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(info)))
        return True
    finally:
        tmp.unlink(missing_ok=True)


class Claims:
    """The claims one worker process holds, kept alive by a heartbeat thread.

    Args:
        name: Names the worker in its claims (e.g. ``shard 1/4``); the owner adds host and pid.
        timeout: Seconds after the last heartbeat when a claim counts as abandoned.
        heartbeat: Seconds between heartbeats.
        clock: ``time.time``-like (tests move it).
    """

    def __init__(self, name: str = "", *, timeout: float = DEFAULT_TIMEOUT, heartbeat: float = DEFAULT_HEARTBEAT,
                 clock: Callable[[], float] = time.time) -> None:
        if not timeout > heartbeat > 0:
            raise ValueError(f"A claim's timeout must exceed its heartbeat period, both positive. "
                             f"Received: timeout={timeout!r}, heartbeat={heartbeat!r}")
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pidns = _pid_namespace()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.name = name
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.clock = clock
        self._held: dict[Path, ClaimInfo] = {}
        self._depth: dict[Path, int] = {}
        self._lost: set[Path] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- judging other workers' claims -------------------------------------------------------------

    def stale(self, info: ClaimInfo) -> bool:
        """Free to take over: released, silent past the timeout, or its owner on this host is gone."""
        if info.released or self.clock() - info.heartbeat > self.timeout:
            return True
        # a process of this host and pid namespace (containers on one host can share a hostname)
        here = info.host == self.host and info.pidns == self.pidns != ""
        return here and info.pid != self.pid and info.pid > 0 and not _pid_alive(info.pid)

    def holder(self, unit: str | Path) -> Optional[ClaimInfo]:
        """The live claim on ``unit`` in force, whoever holds it (None: free to claim)."""
        folder = claims_dir(unit)
        gens = _generations(folder)
        info = read_claim(_gen_path(folder, gens[-1])) if gens else None
        return info if info is not None and (info.owner == self.owner or not self.stale(info)) else None

    # --- claiming --------------------------------------------------------------------------------

    def claim(self, unit: str | Path) -> bool:
        """Claim ``unit``; True when this worker holds it now (a unit claimed again nests)."""
        unit = Path(unit)
        with self._lock:
            if unit in self._held and unit not in self._lost:
                self._depth[unit] += 1
                return True
        folder = claims_dir(unit)
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(8):  # each miss means another worker moved meanwhile: look again
            gens = _generations(folder)
            generation = 1
            if gens:
                info = read_claim(_gen_path(folder, gens[-1]))
                if info is None:
                    continue
                if not self.stale(info):
                    return False
                generation = gens[-1] + 1
            now = self.clock()
            mine = ClaimInfo(self.owner, self.host, self.pid, str(unit), generation, now, now, pidns=self.pidns)
            if _publish(_gen_path(folder, generation), mine):
                for old in gens:  # below the one in force they decide nothing
                    _gen_path(folder, old).unlink(missing_ok=True)
                with self._lock:
                    self._held[unit] = mine
                    self._depth[unit] = 1
                    self._lost.discard(unit)
                self._start_heartbeat()
                return True
        return False

    def holds(self, unit: str | Path) -> bool:
        """True while this worker's claim on ``unit`` is the one in force."""
        unit = Path(unit)
        with self._lock:
            info = self._held.get(unit)
            if info is None or unit in self._lost:
                return False
        gens = _generations(claims_dir(unit))
        return bool(gens) and gens[-1] == info.generation

    def release(self, unit: str | Path, finished: bool) -> None:
        """Give ``unit`` up: a finished one's claims go, an unfinished one is free to take at once."""
        unit = Path(unit)
        with self._lock:  # held through the rewrite, so a heartbeat cannot revive a released claim
            if unit not in self._held:
                return
            self._depth[unit] -= 1
            if self._depth[unit] > 0:
                return
            info = self._held.pop(unit)
            del self._depth[unit]
            if unit in self._lost:  # the unit is someone else's now: leave their claim alone
                self._lost.discard(unit)
            elif finished:
                shutil.rmtree(claims_dir(unit), ignore_errors=True)
            else:
                self._rewrite(unit, info, released=True)

    @contextmanager
    def hold(self, unit: str | Path, finished: Callable[[Path], bool]) -> Iterator[bool]:
        """Claim ``unit`` for a block: yields False when another worker holds it or it is finished.

        Released on the way out, as finished when ``finished(unit)`` says so (an error inside
        leaves the unit to be taken again at once).
        """
        unit = Path(unit)
        if not self.claim(unit):
            yield False
            return
        if finished(unit):  # finished by another worker before this claim: nothing to do
            self.release(unit, finished=True)
            yield False
            return
        try:
            yield True
        finally:
            self.release(unit, finished=finished(unit))

    def close(self) -> None:
        """Stop the heartbeat and release every claim still held (unfinished, free to take)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            held = list(self._held)
            for unit in held:
                self._depth[unit] = 1
        for unit in held:
            self.release(unit, finished=False)

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- heartbeat -------------------------------------------------------------------------------

    def _rewrite(self, unit: Path, info: ClaimInfo, released: bool = False) -> bool:
        """Refresh this worker's claim file in place; False when a newer generation exists (lost)."""
        folder = claims_dir(unit)
        path = _gen_path(folder, info.generation)
        gens = _generations(folder)
        if not gens or gens[-1] != info.generation:
            return False
        fresh = ClaimInfo(**{**asdict(info), "heartbeat": self.clock(), "released": released})
        tmp = path.with_name(f".{path.name}.{self.owner.replace(':', '_')}.beat")
        try:
            tmp.write_text(json.dumps(asdict(fresh)), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # the folder went: the unit was finished and cleaned up by its new owner
            tmp.unlink(missing_ok=True)
            return False
        return True

    def beat(self) -> None:
        """One heartbeat for every claim held (the thread calls this; tests call it directly)."""
        with self._lock:
            for unit, info in self._held.items():
                if unit not in self._lost and not self._rewrite(unit, info):
                    self._lost.add(unit)

    def _start_heartbeat(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.heartbeat):
                self.beat()

        self._thread = threading.Thread(target=loop, name="vacnn-claims-heartbeat", daemon=True)
        self._thread.start()
