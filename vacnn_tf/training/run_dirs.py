"""Run directories: creation rules (resume / force), the manifest, stage timing, DONE markers.

A run directory is finished when it holds ``DONE``. A finished run is never overwritten unless
``force=True``; an unfinished one is continued only with ``resume=True`` (and only when its
config matches), so a typo cannot silently destroy hours of training. Each run's default
directory is named by a hash of the settings that shape it (:func:`run_key`,
:func:`pretrain_key`).

Run directory layout (export and reproduce rely on it)::

    RUN/config.yaml  manifest.json  labels.json  folds.json  summary.json  DONE
    RUN/fold_K/model.keras  vocabulary.npz  metrics.json  predictions.csv  history.csv
    RUN/fold_K/selection.json  logs/  DONE  (best.weights.h5 and backup/ only while the fold runs)
    RUN/metrics/summary|per_class|per_class_pooled|confusion|confusion_normalized .csv/.md, confusion*.png
    PRETRAIN/pretrain/model.keras  metrics.json  predictions.csv ...  (a pretraining run)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import yaml

from vacnn_tf.config import ModelConfig, PRETRAIN_TWINS, RunConfig, keyed_only_off_default, neutral_settings, replace, to_dict, to_yaml
from vacnn_tf.storage import read_json, write_json, write_text

DONE = "DONE"
PRETRAIN_STAGE = "pretrain"  # the stage folder of a pretraining run


class RunExistsError(RuntimeError):
    """The run directory already holds a finished or unfinished run and neither force nor resume was given."""


def neutral_config(config: RunConfig) -> RunConfig:
    """``config`` with the settings that change nothing a run computes (verbosity, workers, paths,
    scheduling; :func:`~vacnn_tf.config.neutral_settings`) set to fixed values, so that hashes of it
    ignore them. The corpus root is made absolute: ``../corpora`` and the same folder spelled from
    ``/`` are the same data."""
    neutral = neutral_settings()
    if config.data.data_root is not None:
        neutral["data.data_root"] = os.path.abspath(os.path.expanduser(str(config.data.data_root)))
    return replace(config, **neutral)


def key_tree(config: RunConfig) -> dict[str, Any]:
    """What the run keys hash: :func:`neutral_config`'s values, later keys at their defaults left out.

    A key added after runs were made trains, at its default, exactly as a config without it; leaving
    it out there (:func:`~vacnn_tf.config.keyed_only_off_default`) finds those runs again.
    """
    tree = to_dict(neutral_config(config))
    for dotted, default in keyed_only_off_default().items():
        *sections, name = dotted.split(".")
        node = tree
        for section in sections:
            node = node[section]
        if node[name] == default:
            del node[name]
    for name in PRETRAIN_TWINS:  # a twin spelled out at its fine-tuning value is the same recipe, the same runs
        if name != "epochs" and tree["train"].get(f"pretrain_{name}") == tree["train"][name]:  # epochs: keyed as ever
            del tree["train"][f"pretrain_{name}"]
    return tree


def run_key(config: RunConfig, pretrained: str | Path | None = None) -> str:
    """Hash of everything in ``config`` that changes results (verbosity, workers, paths excluded).

    With ``pretrained`` (a fine-tuning from a given pretraining, ``--pretrained``) the pretraining
    recipe in ``config`` (``train.pretrain_*``) trains nothing: the given model's content is hashed
    in its place, so that the same pretraining keys the same runs under any profile, and another
    one keys other runs.
    """
    return finetune_key(pretrained)(config)


def _given_pretraining_tree(config: RunConfig, digest: str) -> dict[str, Any]:
    tree = key_tree(config)
    tree["train"] = {k: v for k, v in tree["train"].items() if not k.startswith("pretrain_")}
    tree["pretrained"] = digest
    return tree


def _run_key_of_tree(tree: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def finetune_key(pretrained: str | Path | None = None) -> Callable[[RunConfig], str]:
    """What a fine-tuning run's stored config must match to be resumed (:func:`prepare_run_dir`):
    :func:`run_key`, with the given pretraining, where there is one, in place of the pretraining recipe."""
    if pretrained is None:
        return lambda config: _run_key_of_tree(key_tree(config))
    digest = pretrained_model_digest(pretrained)  # once, not once per comparison
    return lambda config: _run_key_of_tree(_given_pretraining_tree(config, digest))


def pretrained_model_path(pretrained: str | Path) -> Path:
    """The model a pretraining run dir holds (``pretrain/model.keras``), or ``pretrained`` itself, a ``.keras`` file."""
    path = Path(pretrained)
    if path.is_dir():
        path = path / PRETRAIN_STAGE / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No pretrained model at {path}; pass a pretraining run dir or a .keras file.")
    return path


def pretrained_model_digest(pretrained: str | Path) -> str:
    """SHA-1 of the model a pretraining run dir (or ``.keras`` file) holds: what it is, wherever it lies."""
    path = pretrained_model_path(pretrained).resolve()
    stat = path.stat()
    return _file_sha1(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _file_sha1(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime in the cache key: a model rewritten in place is hashed again; one run's
    # directory name, resume check and manifest otherwise read the same file three times
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# model settings that only the fine-tuned model reads: runs that differ in them share a pretraining
FINETUNE_ONLY_MODEL_KEYS = ("use_bovw", "freeze_through", "state_pooling", "head_dropout", "finetune_fc",
                            "attention_gate_bias")
# read by fine-tuning only too, but in every pretraining key since the first runs: hashed at their
# defaults, so that runs differing in them share a pretraining and the pretrainings on disk keep their names
FINETUNE_ONLY_MODEL_KEYS_HASHED_AT_DEFAULT = ("bovw_input", "linear_c")


def pretrain_key(config: RunConfig, exclude: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """Hash of what shapes a pretraining: data, features, architecture, recipe, seed, exclusions.

    The protocol name itself is not part of it: the paper protocol and the speaker protocol for
    EmoDB / SAVEE targets pretrain on the same data and share one pretraining.
    """
    neutral = neutral_config(config)
    # the recipe as the pretraining stage runs it: the fine-tuning values that runs sharing this
    # pretraining may set differently (epochs, patience, masking, mixup) do not change what it learns
    defaults = ModelConfig()
    tree = key_tree(replace(config, train=config.train.for_pretraining(),
                            **{f"model.{k}": getattr(defaults, k) for k in FINETUNE_ONLY_MODEL_KEYS_HASHED_AT_DEFAULT}))
    parts = {
        "seed": config.seed,
        "data_root": neutral.data.data_root,
        "synth_per_class": config.data.synth_per_class if config.data.data_root is None else None,
        "features": asdict(config.features),
        # from the run key's tree, so a model key added later is left out at its default as there
        "model": {k: v for k, v in tree["model"].items() if k not in FINETUNE_ONLY_MODEL_KEYS},
        # verbosity and scheduling (how the same steps run) do not change what a pretraining learns
        "train": tree["train"],
        "folds": config.protocol.folds,
        "subsample": config.protocol.subsample,
        "exclude": {k: sorted(v) for k, v in sorted((exclude or {}).items()) if v},
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pretrain_dir(config: RunConfig, exclude: Optional[Mapping[str, Sequence[str]]] = None) -> Path:
    """Default pretraining directory: ``{out}/pretrain/{architecture}-s{seed}-{key}``.

    Where that folder does not exist, a pretraining of the same architecture and seed made under
    another name (an older way of keying runs) is reused when its stored config and exclusions give
    the same :func:`pretrain_key`: hours of training are found by what they are, not by their name.
    """
    key = pretrain_key(config, exclude)
    stem = f"{config.model.architecture}-s{config.seed}-"
    path = Path(config.out) / "pretrain" / f"{stem}{key}"
    if path.exists() or not path.parent.is_dir():
        return path
    for other in sorted(path.parent.glob(f"{stem}*")):
        if _stored_pretrain_key(other) == key:
            return other
    return path


def _stored_pretrain_key(run_dir: Path) -> Optional[str]:
    """The :func:`pretrain_key` of the pretraining stored in ``run_dir``; None where it cannot be read."""
    from vacnn_tf.config import load_config

    try:
        stored = load_config(base=yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
        exclude = read_json(run_dir / "manifest.json").get("exclude_speakers") or {}
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None
    return pretrain_key(stored, exclude)


def finetune_dir(config: RunConfig, target: str, variant: str, pretrained: str | Path | None = None) -> Path:
    """Default run directory: ``{out}/{target}/{protocol}/{variant}-{architecture}-{bovw}-s{seed}-{key}``
    (``key`` from :func:`run_key`, naming the given pretraining where there is one)."""
    bovw = "bovw" if config.model.use_bovw else "nobovw"
    name = f"{variant}-{config.model.architecture}-{bovw}-s{config.seed}-{run_key(config, pretrained)[:8]}"
    return Path(config.out) / target / config.protocol.name / name


def is_done(path: str | Path) -> bool:
    """True when ``path/DONE`` exists."""
    return (Path(path) / DONE).is_file()


def mark_done(path: str | Path, note: str = "") -> None:
    """Write ``path/DONE`` (atomically; its content is a timestamp and an optional note)."""
    write_text(Path(path) / DONE, time.strftime("%Y-%m-%dT%H:%M:%S%z") + (f" {note}" if note else "") + "\n")


def prepare_run_dir(
    path: str | Path, config: RunConfig, *, resume: bool = False, force: bool = False,
    key: Callable[[RunConfig], str] = run_key,
) -> tuple[Path, bool]:
    """Create (or reopen) a run directory and write its ``config.yaml``.

    Args:
        path: The run directory.
        config: The run's configuration.
        resume: Continue an unfinished run here (skipping finished folds); a finished run is
            returned as it is.
        force: Delete whatever is there and start over.
        key: What must match for ``resume`` to reuse the directory (default :func:`run_key`,
            everything that changes results); a pretraining passes its own key, which leaves
            out the fine-tuning settings of the runs that share it.

    Returns:
        ``(path, finished)``: ``finished`` is True when a finished run was found and kept
        (``resume=True``), in which case nothing needs to be recomputed.

    Raises:
        RunExistsError: the directory holds a run and neither flag allows touching it, or
            ``resume`` was asked for with a different configuration.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if force:
            shutil.rmtree(path)
        else:
            stored = path / "config.yaml"
            if not resume:
                state = "a finished run" if is_done(path) else "an unfinished run"
                raise RunExistsError(
                    f"{path} already holds {state}. Pass --resume (resume=True) to "
                    f"{'reuse it' if is_done(path) else 'continue it'} or --force (force=True) to delete it and start over."
                )
            if stored.is_file():
                old = yaml.safe_load(stored.read_text()) or {}
                from vacnn_tf.config import load_config

                old_key, new_key = key(load_config(base=old)), key(config)
                if old_key != new_key:
                    raise RunExistsError(
                        f"{path} was made with another configuration (key {old_key}, now {new_key}); "
                        "resume needs the same settings. Compare its config.yaml, or pass --force."
                    )
            if is_done(path):
                return path, True
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "config.yaml").is_file():  # once: workers sharing the run find it there, matching
        write_text(path / "config.yaml", to_yaml(config))
    return path, False


def git_revision(cwd: str | Path | None = None) -> Optional[str]:
    """``git rev-parse HEAD`` of the source tree, or None where git or the repository is absent."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).resolve().parent, capture_output=True,
            text=True, timeout=10, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty(cwd: str | Path | None = None) -> Optional[bool]:
    """True when the source tree has uncommitted changes (the revision alone does not describe it)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=True,
        )
        return bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, Optional[str]]:
    """Versions of the libraries that shape results (None where one is not installed)."""
    import importlib

    from vacnn_tf.config import keras_backend

    backend = keras_backend()
    versions: dict[str, Optional[str]] = {"python": sys.version.split()[0], "keras_backend": backend}
    # the backend's own library (not TensorFlow under JAX: importing it there would load it for nothing)
    for name, module in [(backend, backend), ("keras", "keras"), ("numpy", "numpy"),
                         ("opencv", "cv2"), ("librosa", "librosa"), ("scikit-learn", "sklearn"),
                         ("pandas", "pandas")]:
        try:
            versions[name] = str(importlib.import_module(module).__version__)
        except Exception:  # a missing or broken optional library must not stop a run
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Platform, processor and core count of the machine the run used."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }


@dataclass
class Manifest:
    """``RUN/manifest.json``: what ran, where, with what, and how long each stage took.

    Stage times accumulate over resumed sessions; ``sessions`` counts how often the run was
    (re)started. Several workers may share one run (:mod:`vacnn_tf.training.workers`): each save merges
    this session's changes into the file under a lock, so none is lost. Stage times and the
    session count add up; other values this session set replace the file's; the rest is kept.
    """

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    _synced: dict[str, Any] = field(default_factory=dict, repr=False)  # the file as this session last saw it

    @classmethod
    def open(cls, run_dir: Path, config: RunConfig, kind: str, extra: Optional[dict[str, Any]] = None) -> "Manifest":
        """Load the manifest of ``run_dir`` (or start one) and record this session's environment."""
        from vacnn_tf import __version__
        from vacnn_tf.datasets.folds import LEAKAGE_CAVEAT

        path = Path(run_dir) / "manifest.json"
        data = read_json(path) if path.is_file() else {}
        manifest = cls(path, copy.deepcopy(data), copy.deepcopy(data))
        manifest.data.update({
            "kind": kind,
            "vacnn_tf": __version__,
            "git_revision": git_revision(),
            "git_dirty": git_dirty(),
            "seed": config.seed,
            "profile": config.profile,
            "protocol": config.protocol.name,
            "config_key": run_key(config),
            "packages": package_versions(),
            "machine": machine_info(),
        })
        if config.protocol.name == "paper":
            manifest.data["leakage_caveat"] = LEAKAGE_CAVEAT
        manifest.data.update(extra or {})
        manifest.data["sessions"] = int(data.get("sessions", 0)) + 1
        manifest.data.setdefault("stages_seconds", {})
        manifest.save()
        return manifest

    def save(self) -> None:
        """Merge this session's changes into the file (under a lock) and write it atomically."""
        with file_lock(self.path.with_name(f".{self.path.name}.lock")):
            disk = read_json(self.path) if self.path.is_file() else {}
            merged = _merge(disk, self.data, self._synced)
            write_json(self.path, merged)
        self.data, self._synced = merged, copy.deepcopy(merged)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; its wall time is added to ``stages_seconds[name]`` and saved."""
        start = time.perf_counter()
        try:
            yield
        finally:
            times = self.data.setdefault("stages_seconds", {})
            times[name] = round(times.get(name, 0.0) + time.perf_counter() - start, 3)
            self.save()


_ADDED_UP = ("sessions", "stages_seconds")  # manifest entries each session adds to


def _merge(disk: dict[str, Any], ours: dict[str, Any], synced: dict[str, Any], added: bool = False) -> dict[str, Any]:
    """``disk`` with what changed in ``ours`` since ``synced``: numbers under :data:`_ADDED_UP`
    add their change, mappings merge key by key, any other change replaces."""
    merged = copy.deepcopy(disk)
    for key, value in ours.items():
        before = synced.get(key)
        if value == before and key in disk:
            continue
        adds = added or key in _ADDED_UP
        if isinstance(value, dict) and isinstance(disk.get(key), dict):
            merged[key] = _merge(disk[key], value, before if isinstance(before, dict) else {}, adds)
        elif adds and isinstance(value, (int, float)) and isinstance(disk.get(key), (int, float)):
            change = value - (before if isinstance(before, (int, float)) else 0)
            merged[key] = round(disk[key] + change, 3) if isinstance(value, float) else disk[key] + change
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@contextmanager
def file_lock(path: Path, stale_after: float = 60.0, wait: float = 120.0) -> Iterator[None]:
    """Hold ``path`` as a lock file (exclusive create) for a short read-modify-write.

    A lock older than ``stale_after`` seconds was left by a killed process and is removed.

    Raises:
        TimeoutError: the lock stayed held for ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime > stale_after:
                    path.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} stayed locked for {wait:.0f}s; remove it if no vacnn process is running.")
            time.sleep(0.05)
    try:
        os.write(fd, f"{platform.node()}:{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
