"""``vacnn bench``: how fast each stage runs on this machine (figures printed, never asserted).

Stages, each timed after a warm-up (first calls pay tracing, library set-up and caches):

====================================  ============================================================
key                                   what is timed
====================================  ============================================================
``logmel_images_per_s``               wav file -> 224x224 log-mel image (``logmel.extract_images``,
                                      no cache, one process per core; ``--quick``: one process),
                                      synthetic corpus files; ``_1_process``: without the pool
``kaze_histogram_utterances_per_s``   image -> KAZE descriptors -> 128-bin histogram
                                      (``descriptors_for`` + ``BovwVocabulary.histograms``, no cache)
``pipeline_samples_per_s``            ``pipeline.make_dataset`` (shuffle, cast, batch 8) alone, no model
``train_vacnn_samples_per_s``         ``model.fit`` of the VACNN, batch 8, as ``compile_model`` sets it
``train_finetuned_samples_per_s``     ``model.fit`` of the fine-tuned VACNN + BOVW (Figure 3), batch 8
``infer_samples_per_s``               ``runtime.predict`` of the VACNN, batch 32
``latency_ms_median`` / ``_p95``      one utterance (features precomputed) through the VACNN's
                                      exported SavedModel's ``serving_default`` signature, run as
                                      ``vacnn predict`` runs it (no XLA fusion)
``peak_memory_mib``                   this process's peak resident memory (``getrusage``)
====================================  ============================================================

More keys give context: ``*_cpu_ms_per_sample`` (CPU seconds the process used per sample: on
a machine shared with other jobs it moves less than wall-clock throughput),
``infer_keras_predict_samples_per_s`` (``model.predict`` for comparison), the fine-tuned
SavedModel's latency, the machine and its load average, the runtime settings and the sizes.

Throughputs are medians over ``reps`` timed repetitions. Everything runs on synthetic data
(``vacnn_tf.corpora.synth``) in a temporary folder, so no corpus is needed. The log-mel and KAZE
stages run before TensorFlow is imported, so their worker processes fork cheaply.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from vacnn_tf.config import RunConfig, replace

__all__ = ["FULL", "QUICK", "BenchSizes", "RESULT_KEYS", "epoch_timer", "format_report", "machine_info", "pinned",
           "run_bench"]

#: Keys every report has (the issue's list); a test checks them.
RESULT_KEYS: tuple[str, ...] = (
    "logmel_images_per_s",
    "kaze_histogram_utterances_per_s",
    "pipeline_samples_per_s",
    "train_vacnn_samples_per_s",
    "train_finetuned_samples_per_s",
    "infer_samples_per_s",
    "latency_ms_median",
    "latency_ms_p95",
    "peak_memory_mib",
)


@dataclass(frozen=True)
class BenchSizes:
    """How much work each stage times.

    Attributes:
        per_class: Synthetic EmoDB utterances per class (7 classes) for log-mel and KAZE.
        train_samples: Samples per timed training epoch (the anchor uses 96).
        train_reps: Timed training epochs (after one warm-up epoch).
        infer_samples: Samples per timed inference pass (batch 32).
        infer_reps: Timed inference passes.
        latency_calls: Timed single-utterance SavedModel calls (after 5 warm-up calls).
        pipeline_batches: Batches of 8 drawn from tf.data per timing.
        workers: Log-mel processes (0: one per core, as ``extract_images`` runs by default).
        finetuned_latency: Also export and time the fine-tuned model's SavedModel.
        train_warmup: Run one untimed training epoch first (tracing); without it the timed
            epoch includes the tracing, which only a quick smoke run accepts.
    """

    per_class: int
    train_samples: int
    train_reps: int
    infer_samples: int
    infer_reps: int
    latency_calls: int
    pipeline_batches: int
    workers: int = 0
    finetuned_latency: bool = True
    train_warmup: bool = True


# Full: 71-83 s on an idle 2-core machine (the issue allows 5 minutes).
FULL = BenchSizes(per_class=8, train_samples=96, train_reps=5, infer_samples=96, infer_reps=5,
                  latency_calls=100, pipeline_batches=400)
# Quick: tiny sizes for the test; the figures are too short to be worth quoting.
# One process for log-mel (a worker pool costs more than 14 files take) and one export, not two.
QUICK = BenchSizes(per_class=2, train_samples=8, train_reps=1, infer_samples=32, infer_reps=1,
                   latency_calls=3, pipeline_batches=20, workers=1, finetuned_latency=False, train_warmup=False)


def machine_info() -> dict[str, Any]:
    """CPU model, core count and load average: the context a throughput figure needs."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": model, "cores": os.cpu_count(), "load_average_1_5_15": [round(v, 2) for v in load],
            "python": platform.python_version()}


def pinned(command: list[str], cores: int) -> list[str]:
    """``command`` under ``taskset`` on the first ``cores`` CPUs, where taskset exists: a
    benchmark's run then gets the cores a machine of that size would have."""
    try:
        subprocess.run(["taskset", "-V"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        print("taskset not found: running on every core", file=sys.stderr)
        return command
    return ["taskset", "-c", f"0-{cores - 1}", *command]


def _peak_memory_mib() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _rate(count: int, seconds: list[float]) -> float:
    return float(count / np.median(seconds))


def _cpu_ms(count: int, seconds: list[float]) -> float:
    return float(np.median(seconds) / count * 1000.0)


@contextmanager
def _quiet_keras() -> Iterator[None]:
    """Silence two Keras warnings the training stages trigger too and that change no figure:
    ``fit``'s shuffle flag being ignored for a dataset (it shuffles itself) and a dict feeding
    a single-input model (the contract's ``{"logmel": x}``)."""
    from vacnn_tf.models.runtime import quiet_dict_inputs

    with warnings.catch_warnings(), quiet_dict_inputs():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        yield


def _tile(n: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """The first ``n`` rows of the arrays repeated end to end (the synthetic set is smaller)."""
    index = np.arange(n) % len(arrays[0])
    return [a[index] for a in arrays]


def _bench_features(workdir: Path, sizes: BenchSizes, config: RunConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """Log-mel and KAZE+histogram stages; returns images, labels, histograms and the figures."""
    from vacnn_tf.corpora.readers import read_corpus
    from vacnn_tf.corpora.synth import generate
    from vacnn_tf.features.bovw import BovwVocabulary, descriptors_for
    from vacnn_tf.features.logmel import extract_images

    root = generate(workdir / "corpus", per_class=sizes.per_class, seed=config.seed, corpora=("emodb",))["emodb"]
    table = read_corpus("emodb", root).table
    paths = list(table["path"])
    say(f"log-mel images: {len(paths)} synthetic utterances")
    extract_images(paths[:2], config.features, None, workers=1, progress=False)  # warm-up: imports, filters
    batches: list[Any] = []
    one_wall, _ = _timed(lambda: batches.append(extract_images(paths, config.features, None, workers=1, progress=False)))
    batch = batches[0]
    images = batch.images
    classes = sorted(set(table["label"]))
    labels = np.array([classes.index(v) for v in table["label"][batch.ok]], dtype=np.int32)
    # The worker pool (one process per core, what extract_images does on a corpus) pays its
    # start-up inside the timing; QUICK skips it.
    pool_wall = None
    if sizes.workers != 1:
        pool_wall, _ = _timed(lambda: extract_images(paths, config.features, None, workers=sizes.workers, progress=False))

    say("KAZE + histograms")
    descriptors_for(images[:2], config.bovw, None, progress=False)  # warm-up
    descriptors: list[np.ndarray] = []
    desc_wall, _ = _timed(lambda: descriptors.extend(descriptors_for(images, config.bovw, None, progress=False)))
    vocabulary = BovwVocabulary.fit(descriptors, config.bovw, seed=config.seed)  # fit time is not a per-utterance cost
    hist_wall, _ = _timed(lambda: vocabulary.histograms(descriptors))
    histograms = vocabulary.histograms(descriptors)
    vocabulary_path = vocabulary.save(workdir / "vocabulary.npz")
    return {
        "images": images, "labels": labels, "classes": classes, "histograms": histograms,
        "vocabulary_path": vocabulary_path,
        "logmel_images_per_s": len(paths) / (pool_wall if pool_wall is not None else one_wall),
        "logmel_images_per_s_1_process": len(paths) / one_wall,
        "kaze_histogram_utterances_per_s": len(images) / (desc_wall + hist_wall),
    }


def epoch_timer() -> Any:
    """A Keras callback recording each epoch's wall and CPU seconds in ``.walls`` / ``.cpus``.

    Epochs are timed inside one ``fit`` call, as training runs them: a ``fit`` call that
    returns after a single epoch sometimes spends up to a second more shutting its data
    iterator down (measured here on TF 2.21), a cost a multi-epoch run pays once, not per epoch.
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.walls: list[float] = []
            self.cpus: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
            self._start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
            self.walls.append(time.perf_counter() - self._start[0])
            self.cpus.append(time.process_time() - self._start[1])

    return EpochTimer()


def _bench_training(model: Any, inputs: dict[str, np.ndarray], labels: np.ndarray, config: RunConfig,
                    sizes: BenchSizes) -> tuple[float, float]:
    """(samples/s, CPU ms/sample): median epoch of one ``model.fit`` at the configured batch size."""
    from vacnn_tf.datasets.pipeline import make_dataset
    from vacnn_tf.models.optimization import compile_model

    bs = config.train.batch_size
    ds = make_dataset(inputs["logmel"], labels, inputs.get("bovw"), batch_size=bs, shuffle=True, seed=config.seed)
    compile_model(model, config.train, steps_per_epoch=int(np.ceil(len(labels) / bs)))
    timer = epoch_timer()
    warmup = 1 if sizes.train_warmup else 0  # the first epoch traces the train step
    with _quiet_keras():
        model.fit(ds, epochs=warmup + sizes.train_reps, verbose=0, callbacks=[timer])
    return _rate(len(labels), timer.walls[warmup:]), _cpu_ms(len(labels), timer.cpus[warmup:])


def _bench_latency(model: Any, workdir: Path, name: str, classes: list[str], config: RunConfig,
                   example: dict[str, np.ndarray], calls: int, vocabulary: Optional[Path] = None) -> tuple[float, float]:
    """(median, p95) milliseconds of one-utterance calls to the exported ``serving_default``.

    Timed as ``vacnn predict`` and TF Serving run it: without the XLA fusion of training
    (``TrainConfig.xla_fusion``), which costs a few milliseconds per call at batch 1
    (docs/performance.md). The previous auto-clustering switch is restored afterwards.
    """
    import tensorflow as tf

    from vacnn_tf.serving.export import write_savedmodel

    with _quiet_keras():
        target = write_savedmodel(model, workdir / "export" / name / "1", classes, config, vocabulary)
    previous = tf.config.optimizer.get_jit()
    tf.config.optimizer.set_jit(False)  # before loading: functions take the switch when first run
    try:
        return _time_signature(tf.saved_model.load(str(target)).signatures["serving_default"], example, calls)
    finally:
        tf.config.optimizer.set_jit(previous or False)


def _time_signature(serve: Any, example: dict[str, np.ndarray], calls: int) -> tuple[float, float]:
    """(median, p95) milliseconds of ``calls`` calls of a signature on one example, after 5 untimed."""
    import tensorflow as tf

    inputs = {k: tf.constant(v) for k, v in example.items()}  # features precomputed: the model alone is timed
    for _ in range(5):
        serve(**inputs)["probabilities"].numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        serve(**inputs)["probabilities"].numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times)), float(np.percentile(times, 95))


def run_bench(
    quick: bool = False,
    config: RunConfig = RunConfig(),
    progress: Optional[Callable[[str], None]] = None,
    workdir: Optional[str | Path] = None,
) -> dict[str, Any]:
    """Run every stage and return the figures (see the module docstring for the keys).

    Args:
        quick: Tiny sizes (:data:`QUICK`) and no XLA fusion, for tests; else :data:`FULL`.
        config: Feature, BOVW, model and train settings (threads, precision,
            ``steps_per_execution``, ``jit_compile`` and the batch size come from ``config.train``).
        progress: Called with a line before each stage (``None``: silent).
        workdir: Scratch folder (default: a temporary one, removed afterwards).

    Returns:
        A JSON-serialisable dict: every key of :data:`RESULT_KEYS` plus context.

    Raises:
        ValueError: a runtime key of ``config.train`` out of range (checked before any work).

    The runtime settings apply for the bench's duration: afterwards auto-clustering is off and
    the precision policy float32 again (TensorFlow's own defaults).
    """
    from vacnn_tf.models.runtime import check_runtime_config

    check_runtime_config(config.train)  # a bad key fails now, not after the feature stages
    sizes = QUICK if quick else FULL
    if quick:
        # Compiling the XLA clusters for every batch shape would take most of a smoke run.
        config = replace(config, **{"train.xla_fusion": False})
    say = _StageLog(progress)
    started = time.perf_counter()
    machine = machine_info()
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="vacnn-bench-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        result, settings = _bench_stages(work, sizes, config, say)
        result.update(_context(machine, settings, config, sizes, quick, started, say))
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()}
    finally:
        _restore_runtime()
        if own:
            shutil.rmtree(work, ignore_errors=True)


class _StageLog:
    """The ``say`` the stages call: passes each line to ``progress`` and keeps when it came,
    so the report can tell where the minutes went."""

    def __init__(self, progress: Optional[Callable[[str], None]]) -> None:
        self.progress = progress
        self.marks: list[tuple[str, float]] = []  # (stage line, start time)

    def __call__(self, line: str) -> None:
        self.marks.append((line, time.perf_counter()))
        if self.progress is not None:
            self.progress(line)

    def stage_seconds(self) -> dict[str, float]:
        """Seconds from each stage line to the next (the last one: to now)."""
        marks = [*self.marks, ("end", time.perf_counter())]
        return {line: round(end - start, 1) for (line, start), (_, end) in zip(marks, marks[1:])}


def _bench_stages(work: Path, sizes: BenchSizes, config: RunConfig, say: Callable[[str], None]) -> tuple[dict[str, Any], Any]:
    """Every timed stage, the feature stages first; returns the figures and the runtime settings applied."""
    feats = _bench_features(work, sizes, config, say)
    result: dict[str, Any] = {key: feats[key] for key in (
        "logmel_images_per_s", "logmel_images_per_s_1_process", "kaze_histogram_utterances_per_s")}

    # TensorFlow from here on; the runtime settings must precede its first op.
    say("importing TensorFlow")
    import keras

    from vacnn_tf.models.runtime import configure_runtime

    settings = configure_runtime(config.train)
    keras.utils.set_random_seed(config.seed)
    result.update(_bench_models(work, sizes, config, feats, say))

    result["peak_memory_mib"] = _peak_memory_mib()
    result["pipeline_to_training_ratio"] = result["pipeline_samples_per_s"] / result["train_vacnn_samples_per_s"]
    return result, settings


def _context(machine: dict[str, Any], settings: Any, config: RunConfig, sizes: BenchSizes, quick: bool,
             started: float, say: _StageLog) -> dict[str, Any]:
    """What a reader needs beside the figures: durations, the machine and its load, the settings, the sizes."""
    import keras
    import tensorflow as tf

    load_end = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "seconds": time.perf_counter() - started,
        "stage_seconds": say.stage_seconds(),
        "quick": quick,
        "machine": {**machine, "load_average_end": load_end, "tensorflow": tf.__version__, "keras": keras.__version__},
        "settings": {**settings.to_dict(), "steps_per_execution": config.train.steps_per_execution,
                     "jit_compile": config.train.jit_compile, "batch_size": config.train.batch_size},
        "sizes": asdict(sizes),
    }


def _bench_models(work: Path, sizes: BenchSizes, config: RunConfig, feats: dict[str, Any],
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The TensorFlow stages (pipeline, training, inference, latency) on the feature stages' output.

    The models are built in a fixed order after the caller seeds Keras, so their initial
    weights are a function of ``config.seed``.
    """
    from vacnn_tf.datasets.pipeline import make_dataset, pipeline_throughput
    from vacnn_tf.models.finetuned import build_finetuned
    from vacnn_tf.models.networks import build_vacnn

    result: dict[str, Any] = {}
    classes, n_classes = feats["classes"], len(feats["classes"])
    images = feats["images"].astype(np.float32)[..., None]
    # uint8 (N, 224, 224): what make_dataset takes, as the training stages hold images.
    logmel, labels, bovw = _tile(sizes.train_samples, feats["images"], feats["labels"], feats["histograms"])

    say("tf.data pipeline")
    pipe = make_dataset(feats["images"], feats["labels"], feats["histograms"], batch_size=config.train.batch_size,
                        shuffle=True, seed=config.seed, repeat=True)
    result["pipeline_samples_per_s"] = pipeline_throughput(pipe, sizes.pipeline_batches)

    say(f"training: VACNN, batch {config.train.batch_size}, {sizes.train_samples} samples x {sizes.train_reps}")
    vacnn = build_vacnn(n_classes, config=config.model)
    rate, cpu = _bench_training(vacnn, {"logmel": logmel}, labels, config, sizes)
    result["train_vacnn_samples_per_s"], result["train_vacnn_cpu_ms_per_sample"] = rate, cpu

    say("training: fine-tuned VACNN + BOVW")
    finetuned = build_finetuned(vacnn, n_classes, config.model, use_bovw=True, bovw_size=config.bovw.k)
    rate, cpu = _bench_training(finetuned, {"logmel": logmel, "bovw": bovw}, labels, config, sizes)
    result["train_finetuned_samples_per_s"], result["train_finetuned_cpu_ms_per_sample"] = rate, cpu

    say("inference: batch 32")
    result.update(_bench_inference(vacnn, _tile(sizes.infer_samples, images)[0], sizes))

    say("latency: one utterance through the exported SavedModel")
    one = {"logmel": images[:1]}
    result["latency_ms_median"], result["latency_ms_p95"] = _bench_latency(
        vacnn, work, "vacnn", classes, config, one, sizes.latency_calls)
    result["latency_finetuned_ms_median"] = result["latency_finetuned_ms_p95"] = None
    if sizes.finetuned_latency:
        one_bovw = {"logmel": images[:1], "bovw": feats["histograms"][:1]}
        result["latency_finetuned_ms_median"], result["latency_finetuned_ms_p95"] = _bench_latency(
            finetuned, work, "finetuned", classes, config, one_bovw, sizes.latency_calls, feats["vocabulary_path"])
    return result


def _bench_inference(model: Any, infer_x: np.ndarray, sizes: BenchSizes) -> dict[str, float]:
    """Batch-32 throughput of ``runtime.predict`` (wall and CPU) and of ``model.predict``, after a warm-up each."""
    from vacnn_tf.models.runtime import predict

    predict(model, infer_x[:32], batch_size=32)  # warm-up: traces the forward pass
    walls, cpus = [], []
    for _ in range(sizes.infer_reps):
        wall, cpu_s = _timed(lambda: predict(model, infer_x, batch_size=32))
        walls.append(wall)
        cpus.append(cpu_s)
    result = {"infer_samples_per_s": _rate(len(infer_x), walls), "infer_cpu_ms_per_sample": _cpu_ms(len(infer_x), cpus)}
    model.predict(infer_x[:32], batch_size=32, verbose=0)
    walls = [_timed(lambda: model.predict(infer_x, batch_size=32, verbose=0))[0] for _ in range(sizes.infer_reps)]
    result["infer_keras_predict_samples_per_s"] = _rate(len(infer_x), walls)
    return result


def _restore_runtime() -> None:
    """Undo the process-wide switches the bench set (auto-clustering, precision policy), so a
    caller that goes on (a test session, a notebook) computes as before. Thread counts cannot
    be undone and the XLA flags do nothing once auto-clustering is off."""
    import sys

    if "tensorflow" not in sys.modules:
        return
    import keras
    import tensorflow as tf

    tf.config.optimizer.set_jit(False)
    keras.mixed_precision.set_global_policy("float32")


def format_report(result: dict[str, Any]) -> str:
    """The human-readable table ``vacnn bench`` prints without ``--json``."""
    m = result["machine"]
    s = result["settings"]
    rows = [
        ("log-mel images", result["logmel_images_per_s"], "images/s (worker pool)" if not result["quick"] else "images/s"),
        ("  (one process)", result["logmel_images_per_s_1_process"], "images/s"),
        ("KAZE + histogram", result["kaze_histogram_utterances_per_s"], "utterances/s (all cores)"),
        ("tf.data pipeline", result["pipeline_samples_per_s"], "samples/s"),
        ("train VACNN, batch 8", result["train_vacnn_samples_per_s"], "samples/s"),
        ("train fine-tuned + BOVW, batch 8", result["train_finetuned_samples_per_s"], "samples/s"),
        ("inference, batch 32", result["infer_samples_per_s"], "samples/s"),
        ("  (model.predict, batch 32)", result["infer_keras_predict_samples_per_s"], "samples/s"),
        ("SavedModel latency, median", result["latency_ms_median"], "ms"),
        ("SavedModel latency, p95", result["latency_ms_p95"], "ms"),
        ("  fine-tuned + BOVW, median", result["latency_finetuned_ms_median"] or float("nan"), "ms"),
        ("peak memory", result["peak_memory_mib"], "MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores; load average {m['load_average_1_5_15']} at start, "
        f"{m.get('load_average_end')} at end",
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; threads intra={s['intra_op_threads']} "
        f"inter={s['inter_op_threads']}, precision {s['precision']}, XLA fusion {s['xla_fusion']}, "
        f"steps_per_execution {s['steps_per_execution']}, jit_compile {s['jit_compile']}, oneDNN {s['onednn']}",
    ]
    lines += [f"{name:<{width}}  {value:>9.1f}  {unit}" for name, value, unit in rows]
    lines.append(f"tf.data / training: {result['pipeline_to_training_ratio']:.0f}x; "
                 f"{result['seconds']:.0f} s in all{' (quick sizes)' if result['quick'] else ''}")
    return "\n".join(lines)
