"""One typed configuration object for a run, parsed once from YAML plus ``--set`` overrides.

Defaults live only in the dataclass fields below; every stage receives the part it needs
explicitly (``config.features``, ``config.bovw``, ...). There is no global configuration.
The docs' configuration reference (docs/configuration.md) is generated from these fields by
``python -m vacnn_tf.config`` and a test keeps it current.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar, Union

import yaml

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable


# The allowed values of every enumerated setting, listed here once: the dataclasses check them
# when a config is built (before any work starts), and the modules acting on them import them.
PROFILES: tuple[str, ...] = ("paper", "quick", "demo")  # RunConfig.profile
RESIZE_MODES: tuple[str, ...] = ("linear", "area", "cubic", "nearest")  # FeatureConfig.resize: cv2 interpolations
BOVW_NORMALIZATIONS: tuple[str, ...] = ("none", "l1", "l2")  # BovwConfig.normalization
KMEANS_MODES: tuple[str, ...] = ("minibatch", "full")  # BovwConfig.kmeans
# ModelConfig.architecture: the keys of vacnn_tf.models.networks.MODELS, listed here so that checking a
# config does not import TensorFlow (a test checks the two agree)
ARCHITECTURES: tuple[str, ...] = ("vacnn", "vacnn-cbam", "vacnn-noatt", "resnet", "inception", "mobilenet")
STATE_POOLINGS: tuple[str, ...] = ("flatten", "gap", "time_gap")  # ModelConfig.state_pooling
INPUT_NORMS: tuple[str, ...] = ("scale", "band")  # ModelConfig.input_norm
BOVW_INPUTS: tuple[str, ...] = ("raw", "standardize")  # ModelConfig.bovw_input
SELECT_ON: tuple[str, ...] = ("accuracy", "loss")  # TrainConfig.select_on
CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")  # TrainConfig.class_weight
# TrainConfig.precision: Keras dtype policies worth having on a CPU. "mixed_float16" is left
# out: CPUs have no fast float16 arithmetic and it needs loss scaling.
PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")
# TrainConfig.strategy: "default" trains on one device; "mirrored" is tf.distribute.MirroredStrategy
STRATEGIES: tuple[str, ...] = ("default", "mirrored")
BATCH_PER: tuple[str, ...] = ("replica", "global")  # TrainConfig.batch_per
PROTOCOLS: tuple[str, ...] = ("paper", "speaker")  # ProtocolConfig.name
# FeatureConfig.image_size: the paper's 224x224 (section 3.1). Other sizes are for fast CPU
# profiles (the demo, the labs, the tests): a multiple of 32 keeps every stride of the VACNN
# exact (224 / 32 = 7 attended states a side after the fine-tuning pool), 64 is the smallest
# size whose fine-tuned VACNN still has a 2x2 grid of states.
IMAGE_SIZE = 224
MIN_IMAGE_SIZE = 64


def keras_backend() -> str:
    """The Keras backend this process trains with: ``tensorflow``, ``jax`` or ``torch``.

    Read the way Keras reads it (``KERAS_BACKEND``, else ``backend`` in ``$KERAS_HOME/keras.json``,
    else TensorFlow) and without importing Keras where it is not imported yet: under the
    TensorFlow backend that import loads TensorFlow, which the command line first silences.
    """
    import sys

    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return str(keras.backend.backend())
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    settings = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return str(json.loads(settings.read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):  # no file, or not a JSON object: Keras's default
        return "tensorflow"


_T = TypeVar("_T")


def setting(default: _T, doc: str, *, choices: tuple[str, ...] | None = None, neutral: bool = False,
            keyed_at_default: bool = True) -> _T:
    """One config field with its documentation and its rules, kept together in the field's metadata.

    Args:
        default: The field's default value.
        doc: Its entry in the configuration reference (docs/configuration.md).
        choices: The values it allows; any other value is refused when the config is built.
        neutral: True for a setting that changes nothing a run computes (verbosity, paths,
            scheduling): the run keys hash it at its default whatever it is set to, so a run
            resumed or found again with it changed is the same run.
        keyed_at_default: False for a setting added after runs were keyed without it: at its
            default it is left out of the run keys, so those runs are still found.
    """
    metadata: dict[str, Any] = {"doc": doc}
    if choices is not None:
        metadata["choices"] = choices
    if neutral:
        metadata["neutral"] = True
    if not keyed_at_default:
        metadata["keyed_at_default"] = False
    return field(default=default, metadata=metadata)


def section(factory: Callable[[], _T], doc: str) -> _T:
    """A sub-config field (``features``, ``train``, ...) with its documentation."""
    return field(default_factory=factory, metadata={"doc": doc})


def _check_choices(prefix: str, config: Any) -> None:
    """Raise a ConfigError naming the first field of ``config`` whose value is not among its choices."""
    for f in dataclasses.fields(config):
        values = f.metadata.get("choices")
        if values is None:
            continue
        value = getattr(config, f.name)
        if value not in values:
            key = f"{prefix}{f.name}"
            raise ConfigError(f"Config key {key!r} must be one of {list(values)}. Received: {key}={value!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel image settings (section 3.1, 4.2). Fields marked "silent" are our choices."""

    sample_rate: int = setting(16000, "silent: one analysis rate for all corpora (EmoDB's native rate)")
    n_fft: int = setting(2048, "paper")
    hop_length: int = setting(512, "paper")
    n_mels: int = setting(128, "silent")
    fmin: float = setting(0.0, "silent")
    fmax: Optional[float] = setting(None, "silent: None means sample_rate / 2")
    top_db: float = setting(80.0, "silent: dynamic range mapped onto 0-255")
    image_size: int = setting(224, "paper: 224x224x1; a multiple of 32 from 64 up, the side of the square image "
                                    "every model, the export and the serving signature are built for")
    low_freq_at_bottom: bool = setting(True, "silent: as a spectrogram is usually drawn")
    resize: str = setting("linear", "silent: cv2 interpolation for the resize to image_size: linear|area|cubic|nearest",
                          choices=RESIZE_MODES)
    min_duration: float = setting(0.1, "shorter files are rejected as bad input (seconds)")
    trim_db: Optional[float] = setting(None, "silent: None keeps leading/trailing silence; a number trims at that dB")
    max_seconds: Optional[float] = setting(
        None, "silent: None renders every utterance whole; a number keeps only its first max_seconds (after trimming)")
    pad_seconds: Optional[float] = setting(
        None, "silent: None pads nothing; a number zero-pads shorter utterances at the end to this length "
              "(with max_seconds equal: a fixed-length copy such as the 2.0 s EmoDB)")

    def __post_init__(self) -> None:
        # checked here, once, so a bad setting is reported as the config's fault before any file
        # is read, and never as a bad-audio report for every file of a corpus
        _check_choices("features.", self)
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_IMAGE_SIZE or size % 32:
            raise ConfigError(f"Config key 'features.image_size' must be a multiple of 32 of at least {MIN_IMAGE_SIZE} "
                              f"(the paper's is {IMAGE_SIZE}): every stride of the VACNN must divide it. "
                              f"Received: features.image_size={size!r}")
        for name in ("max_seconds", "pad_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"features.{name} must be a positive number of seconds or null. "
                                  f"Received: features.{name}={value!r}")

    def key(self) -> str:
        """A short stable hash of these settings, used to key feature caches."""
        return config_hash(self)


@dataclass(frozen=True)
class BovwConfig:
    """Bag-of-visual-words over KAZE descriptors (section 3.2)."""

    k: int = setting(128, "paper: 128 visual words")
    kaze_threshold: float = setting(0.001, "OpenCV default detector response threshold")
    kaze_extended: bool = setting(False, "False: 64-dim descriptors")
    kaze_upright: bool = setting(False, "True: no orientation (faster, not rotation-invariant); OpenCV default False")
    kaze_octaves: int = setting(4, "OpenCV default: maximum octave evolution")
    kaze_octave_layers: int = setting(4, "OpenCV default: sublevels per octave")
    normalization: str = setting("l1", "silent: none|l1|l2 (l1: word frequencies summing to 1)",
                                 choices=BOVW_NORMALIZATIONS)
    kmeans: str = setting("minibatch", "minibatch|full (full: exact Lloyd K-means; comparison in vacnn_tf/features/bovw.py)",
                          choices=KMEANS_MODES)
    max_fit_descriptors: int = setting(100000, "descriptors sampled from the training fold for K-means")
    kmeans_batch_size: int = setting(4096, "MiniBatchKMeans batch size (only for kmeans=minibatch)")

    def __post_init__(self) -> None:
        _check_choices("bovw.", self)


@dataclass(frozen=True)
class ModelConfig:
    """Network settings (sections 3.1, 3.2; Figure 2 and 3)."""

    architecture: str = setting("vacnn", "vacnn|vacnn-cbam|vacnn-noatt|resnet|inception|mobilenet",
                                choices=ARCHITECTURES)
    groups: int = setting(8, "GroupNormalization groups, paper G = 8")
    reduction: int = setting(4, "channel-attention MLP reduction r, paper r = 4")
    spatial_kernel: int = setting(7, "spatial-attention conv kernel, paper 7x7")
    dense_units: int = setting(256, "FC 256 before the classifier")
    l2: float = setting(1e-4, "paper: L2 weight decay 1e-4")
    use_bovw: bool = setting(True, "fine-tuned model fuses the BOVW histogram through Luong attention")
    state_pooling: str = setting(
        "flatten", "silent: the BOVW fusion head reads the 49 attended states flattened (keeps where in time and "
                   "frequency) or averaged (\"gap\"), or each frequency row averaged over time (\"time_gap\", ours)",
        choices=STATE_POOLINGS)
    freeze_through: str = setting("va_block1", "fine-tuning freezes every layer up to and including this block")
    head_dropout: float = setting(
        0.0, "ours, not the paper's: dropout rate before the fine-tuned model's FC and classifier layers "
             "(0: none, as the paper)")
    linear_c: float = setting(
        0.1, "ours: inverse L2 strength (scikit-learn C) of the linear reference, `finetune --variant linear`")
    input_norm: str = setting(
        "scale", "\"scale\": pixel values rescaled only (the paper); \"band\" (ours): each mel band standardised "
                 "with the training images' statistics",
        choices=INPUT_NORMS)
    bovw_input: str = setting(
        "raw", "silent: \"raw\" feeds the BOVW histogram to its MLP as normalised (bovw.normalization); "
               "\"standardize\" (ours) z-scores each word with the training fold's statistics first (docs/method.md)",
        choices=BOVW_INPUTS)
    bn_momentum: float = setting(
        0.9, "silent: moving-average momentum of the baselines' BatchNormalization (Keras's applications use 0.99; "
             "0.9 is PyTorch's default, and tracks the weights at batch 8)")
    attention_gate_bias: Optional[float] = setting(
        None, "ours, not the paper's: None keeps eq. (7) unbiased (the paper); a number adds a trained bias to "
              "W_c [C_t; h_t], initialised at that value, so that the attention vector av_t starts at tanh(value) "
              "instead of near 0 and eq. (8) passes the VACNN states from the first step (docs/method.md)",
        keyed_at_default=False)
    finetune_fc: bool = setting(
        True, "silent: the fine-tuned model's FC dense_units + ReLU before its softmax classifier (the pretraining "
              "head's); false: the softmax classifier alone on the (attended) states, one reading of section 3's "
              "\"a fully connected layer and softmax\" after eq. (8)", keyed_at_default=False)
    residual: bool = setting(
        False, "ours: each VA block adds its input to its attended output (identity, or a 1x1 "
               "strided conv + GN where the shape changes), the ResNet-style joining section 3.1's text describes "
               "(\"concatenated the VA blocks by adding convolutional features\") and Figure 2 does not draw",
        keyed_at_default=False)
    baseline_image_size: Optional[int] = setting(
        None, "ours, not the paper's: side to which a keras.applications baseline (architecture resnet, inception, "
              "mobilenet) resizes its input inside the model (antialiased bilinear), a multiple of 32, at most "
              "features.image_size; features, caches and serving keep features.image_size. None: no resizing. For CPU "
              "budgets: the three backbones are Table 10's largest networks",
        keyed_at_default=False)

    def __post_init__(self) -> None:
        # checked when the config is built, so a bad value stops a run before any pretraining
        m = self.bn_momentum
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 <= m < 1.0:
            raise ConfigError(f"Config key 'model.bn_momentum' must be a number in [0, 1). Received: model.bn_momentum={m!r}")
        bias = self.attention_gate_bias
        if bias is not None and (isinstance(bias, bool) or not isinstance(bias, (int, float))):
            raise ConfigError(f"Config key 'model.attention_gate_bias' must be null or a number. "
                              f"Received: model.attention_gate_bias={bias!r}")
        size = self.baseline_image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MIN_IMAGE_SIZE or size % 32):
            raise ConfigError(f"Config key 'model.baseline_image_size' must be null or a multiple of 32 of at least "
                              f"{MIN_IMAGE_SIZE}. Received: model.baseline_image_size={size!r}")
        _check_choices("model.", self)


# TrainConfig fields that a pretraining may set apart (train.pretrain_<name>), so that the
# fine-tuning runs sharing one pretraining can differ in them without retraining it
PRETRAIN_TWINS = ("epochs", "patience", "augment", "mixup", "decay_every")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe (section 4.2). Fields marked "silent" are our choices."""

    learning_rate: float = setting(1e-3, "paper")
    decay_every: int = setting(10, "paper: step decay every 10 epochs")
    decay_factor: float = setting(0.5, "silent")
    batch_size: int = setting(8, "paper")
    epochs: int = setting(50, "silent")
    patience: int = setting(10, "silent: early stopping after this many epochs without a better validation accuracy")
    select_on: str = setting(
        "accuracy", "paper: model selection (and early stopping) on validation accuracy; "
                    "\"loss\": on validation loss (ours)",
        choices=SELECT_ON)
    val_fraction: float = setting(0.1, "silent: validation carved from the training folds")
    jit_compile: bool = setting(
        False, "XLA-compiled train step under TensorFlow (measured slower on 2 CPU cores; try it on a GPU); always on "
               "under JAX (docs/reproducing.md)")
    steps_per_execution: int = setting(
        4, "train steps per compiled call: less per-step Python overhead, same maths (docs/performance.md)",
        neutral=True)
    precision: str = setting(
        "float32", "float32|mixed_bfloat16 (bf16 compute on CPUs with AVX512_BF16 or AMX, float32 weights; "
                   "docs/performance.md)",
        choices=PRECISIONS)
    xla_fusion: bool = setting(
        True, "CPU only: XLA fuses the element-wise and reduction ops (GroupNorm, attention) between the oneDNN "
              "convolutions; same maths, rounding-level differences")
    intra_op_threads: int = setting(
        0, "threads inside one op (conv, matmul); 0: one per core this process may run on (all of them, or its "
           "share under --jobs or a cluster job's)",
        neutral=True)
    inter_op_threads: int = setting(0, "ops run concurrently; 0: TensorFlow's default", neutral=True)
    jobs: int = setting(
        1, "worker processes for a reproduce table or a `vacnn finetune` run where --jobs is not given, at most one "
           "per usable core (and per GPU); 1: this process alone. The demo profile sets 2: its trainings are short, "
           "and much of each is single-threaded graph tracing that a second worker overlaps",
        neutral=True, keyed_at_default=False)
    pretrain_epochs: Optional[int] = setting(None, "None: same as epochs")
    pretrain_patience: Optional[int] = setting(
        None, "early-stopping patience of a pretraining; None: same as patience. Set, it keeps a fine-tuning's "
              "patience out of the pretraining it reuses", keyed_at_default=False)
    pretrain_augment: Optional[bool] = setting(
        None, "masking (augment and its widths) in a pretraining; None: same as augment", keyed_at_default=False)
    pretrain_mixup: Optional[float] = setting(
        None, "mixup alpha in a pretraining; None: same as mixup", keyed_at_default=False)
    pretrain_decay_every: Optional[int] = setting(
        None, "step-decay interval of a pretraining, in epochs; None: same as decay_every", keyed_at_default=False)
    baseline_epochs: Optional[int] = setting(
        None, "ours, not the paper's: epochs of a keras.applications baseline (model.architecture resnet, "
              "inception, mobilenet) in pretraining and fine-tuning alike; None: the VACNN's epochs and "
              "pretrain_epochs. The demo profile sets it so that its three large baselines fit its time budget",
        keyed_at_default=False)

    def epochs_for(self, baseline: bool, pretraining: bool) -> int:
        """Epochs of one stage: a baseline's ``baseline_epochs`` where set, else (pre)training's own."""
        if baseline and self.baseline_epochs is not None:
            return self.baseline_epochs
        return (self.for_pretraining() if pretraining else self).epochs

    def for_pretraining(self) -> "TrainConfig":
        """This recipe as a pretraining runs it: each ``pretrain_*`` value that is set in place of its twin, and
        no class weights (a fine-tuning's alone)."""
        own = {name: getattr(self, f"pretrain_{name}") for name in PRETRAIN_TWINS}
        return dataclasses.replace(self, **{name: value for name, value in own.items() if value is not None},
                                   **{f"pretrain_{name}": None for name in PRETRAIN_TWINS}, class_weight="none")

    class_weight: str = setting(
        "none", "ours, not the paper's: \"balanced\" weights each fine-tuning sample's loss by n / (classes x "
                "n_class) of its fold's training part, so that a small class (EmoDB's 46 disgust against 127 anger "
                "utterances) counts as much as a large one; mixed samples take the blend of their two weights. "
                "Pretrainings never use it (their corpora are nearly balanced), so fine-tunings that differ in it "
                "share one", choices=CLASS_WEIGHTS, keyed_at_default=False)
    augment: bool = setting(
        False, "ours, not the paper's: SpecAugment-style masking of training images (docs/method.md)")
    augment_masks: int = setting(
        2, "with augment: this many frequency bands and this many time spans masked per image")
    augment_freq_width: int = setting(24, "with augment: widest frequency band masked, in image rows (24 of 224 by default)")
    augment_time_width: int = setting(24, "with augment: widest time span masked, in image columns (24 of 224 by default)")
    augment_time_shift: int = setting(
        0, "with augment: shift each image in time by up to this many columns either way, the vacated columns at "
           "the floor (0: no shift)")
    ema: float = setting(
        0.0, "ours, not the paper's: momentum of an exponential moving average of the weights, used for "
             "validation, selection and the saved model (e.g. 0.995); 0: off")
    augment_warp: float = setting(
        0.0, "with augment: stretch or squeeze each image along frequency and time by factors drawn from 1 +- this "
             "(e.g. 0.1; 0: none)")
    mixup: float = setting(
        0.0, "ours, not the paper's: mixup alpha for the training batches (Zhang et al. 2018); 0: off")
    audit_test: bool = setting(
        False, "ours, a leak audit: also score the test part after every epoch (history column "
               "audit_test_accuracy); never used for selection or stopping, it measures what choosing the "
               "checkpoint on the test fold would report")
    strategy: str = setting(
        "default", "default: one device; mirrored: tf.distribute.MirroredStrategy, one replica on each GPU (on "
                   "each CPU device where there is no GPU), their gradients combined into one step "
                   "(docs/reproducing.md)",
        choices=STRATEGIES, keyed_at_default=False)
    batch_per: str = setting(
        "replica", "with strategy mirrored: batch_size is per replica (the paper's 8 on every device, a global "
                   "batch of 8 x devices) or \"global\" (one batch of batch_size split over the devices)",
        choices=BATCH_PER, keyed_at_default=False)
    verbose: int = setting(1, "Keras progress bar (0 silent, 1 bar, 2 one line per epoch)", neutral=True)

    def __post_init__(self) -> None:
        _check_choices("train.", self)
        # patience 0 would stop after the first epoch even when it improved
        for name in ("patience", "pretrain_patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be 1 or more (epochs without a better validation score). "
                                  f"Received: {name}={value}")


@dataclass(frozen=True)
class ProtocolConfig:
    """How folds are made (section 4.2, and where its protocol leaks: docs/protocols.md)."""

    name: str = setting("paper", "paper: stratified random k-fold; speaker: speaker-independent folds",
                        choices=PROTOCOLS)
    folds: int = setting(5, "paper: 5-fold cross-validation")
    max_folds: Optional[int] = setting(None, "run only the first N folds (quick profiles)")
    first_fold: int = setting(
        0, "ours: skip the folds before this index (a cross-validation split over sessions or machines that share "
           "no folder; each fold's seed follows its index, so fold K trains the same either way)",
        keyed_at_default=False)
    ravdess_actor_groups: int = setting(5, "speaker protocol: RAVDESS actors held out in this many groups")
    subsample: Optional[int] = setting(None, "keep at most this many utterances per corpus (quick profiles)")

    def __post_init__(self) -> None:
        _check_choices("protocol.", self)
        if self.first_fold < 0:
            raise ConfigError(f"protocol.first_fold must be 0 or more. Received: first_fold={self.first_fold}")
        if self.max_folds is not None and self.max_folds < 1:
            raise ConfigError(f"protocol.max_folds must be 1 or more, or null for every fold. Received: "
                              f"max_folds={self.max_folds}")


@dataclass(frozen=True)
class DataConfig:
    """Where corpora and caches live."""

    data_root: Optional[str] = setting(None, "folder with ravdess/ emodb/ tess/ savee/; None = synthetic corpus")
    cache_dir: str = setting(
        "cache", "folder of the feature and KAZE descriptor caches and the generated synthetic corpus",
        neutral=True)
    synth_per_class: int = setting(6, "synthetic corpus utterances per class per corpus, spread over its speakers")
    workers: int = setting(0, "feature-extraction processes; 0 = all cores", neutral=True)

    def __post_init__(self) -> None:
        _check_choices("data.", self)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs. The seed comes first: it drives folds, weights and shuffling."""

    seed: int = setting(42, "drives the folds, the initial weights and the shuffling (a whole number, 0 or more)")
    profile: str = setting("paper", "paper|quick|demo", choices=PROFILES)
    out: str = setting("runs", "folder the runs are written under: pretrain/ and one folder per target corpus",
                       neutral=True)
    data: DataConfig = section(DataConfig, "where corpora and caches live")
    features: FeatureConfig = section(FeatureConfig, "log-mel image settings")
    bovw: BovwConfig = section(BovwConfig, "bag-of-visual-words over KAZE descriptors")
    model: ModelConfig = section(ModelConfig, "network settings")
    train: TrainConfig = section(TrainConfig, "optimisation recipe")
    protocol: ProtocolConfig = section(ProtocolConfig, "how folds are made")

    def __post_init__(self) -> None:
        _check_choices("", self)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            # numpy's generators and scikit-learn's random_state refuse negative seeds, deep inside a run
            raise ConfigError(f"Config key 'seed' must be a whole number, 0 or more. Received: seed={self.seed!r}")
        size = self.model.baseline_image_size
        if size is not None and size > self.features.image_size:
            raise ConfigError(f"Config key 'model.baseline_image_size' must be at most features.image_size "
                              f"({self.features.image_size}): a baseline resizes its input down, never up. "
                              f"Received: model.baseline_image_size={size}")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the schema."""


# The YAML files shipped inside the package (vacnn_tf/configs/). A config path beginning with
# this folder name that names no file on disk is read from there, so `--config
# configs/demo.yaml` works from any folder, in a checkout or an installed wheel alike.
PACKAGED_DIR = "configs"

ConfigSource = Union[str, "os.PathLike[str]", Traversable]


def packaged_config(name: str) -> Traversable:
    """A config shipped with the package, e.g. ``packaged_config("demo.yaml")``."""
    node = resources.files("vacnn_tf").joinpath(PACKAGED_DIR)
    for part in Path(name).parts:
        node = node.joinpath(part)
    return node


def packaged_configs() -> list[str]:
    """Every shipped config as the path that names it: ``configs/demo.yaml``, ``configs/paper.yaml``, ..."""
    found: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                found.append(f"{prefix}{child.name}")

    walk(resources.files("vacnn_tf").joinpath(PACKAGED_DIR), f"{PACKAGED_DIR}/")
    return found


def _config_file(path: ConfigSource) -> Traversable:
    """The file a ``--config`` value names: a file on disk first, else a shipped config."""
    if not isinstance(path, (str, os.PathLike)):
        if not path.is_file():
            raise ConfigError(f"Config file not found: {path}")
        return path
    disk = Path(path)
    if disk.is_file():
        return disk
    parts = disk.parts
    if not disk.is_absolute() and len(parts) > 1 and parts[0] == PACKAGED_DIR:
        shipped = packaged_config("/".join(parts[1:]))
        if shipped.is_file():
            return shipped
    close = difflib.get_close_matches(disk.as_posix(), packaged_configs(), n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]}?" if close else f" (shipped configs: {', '.join(packaged_configs())})"
    raise ConfigError(f"Config file not found: {path}{hint}")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check (and gently coerce) one value against its dataclass annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"Config key {key!r} expects a mapping. Received: {key}={value!r}")
        return _build(annotation, value, key + ".")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"Config key {key!r} expects true or false. Received: {key}={value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"Config key {key!r} expects an integer. Received: {key}={value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"Config key {key!r} expects a number. Received: {key}={value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"Config key {key!r} expects a string. Received: {key}={value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        guesses = [f"{prefix}{m[0]}" for u in unknown if (m := difflib.get_close_matches(u, list(types), n=1))]
        hint = f"Did you mean {' or '.join(guesses)}? " if guesses else ""
        raise ConfigError(
            f"Unknown config key(s) {[prefix + u for u in unknown]}. {hint}"
            f"Allowed under {prefix or 'top level'}: {sorted(types)}"
        )
    kwargs = {name: _coerce(val, types[name], prefix + name) for name, val in values.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Cannot set {dotted!r}: {part!r} is not a section.")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override; the value is read as YAML (so 0.5, true, null work)."""
    if "=" not in text:
        raise ConfigError(f"An override must look like section.key=value. Received: {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(
    path: ConfigSource | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Build a RunConfig from defaults, then ``base``, then a YAML file, then ``--set`` overrides.

    Args:
        path: A YAML file; a relative ``configs/...`` path that names no file is read from the
            configs shipped with the package (:func:`packaged_configs`).
        overrides: ``section.key=value`` strings, applied last.
        base: A nested mapping applied before the file (a profile's settings).
    """
    tree: dict[str, Any] = {}
    for key, value in _flatten(base or {}):
        _set_dotted(tree, key, value)
    if path is not None:
        source = _config_file(path)
        loaded = yaml.safe_load(source.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file {path} must hold a mapping at the top level.")
        for key, value in _flatten(loaded):
            _set_dotted(tree, key, value)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return _build(RunConfig, tree)


ConfigT = TypeVar("ConfigT")


def from_dict(cls: type[ConfigT], values: Mapping[str, Any], prefix: str = "",
              source: str | os.PathLike[str] | None = None) -> ConfigT:
    """A config dataclass from a mapping, checked exactly as :func:`load_config` checks a file.

    For settings stored beside an artefact (an exported model's ``feature_config.json``):
    unknown keys, wrong types and values outside the allowed ones raise a ConfigError.

    Args:
        cls: A config dataclass, e.g. ``FeatureConfig``.
        values: Its fields by name (``dataclasses.asdict`` of one).
        prefix: The section the keys live under, with its dot (``"features."``), so errors
            name the key as a config file would.
        source: The file ``values`` came from, named in errors; None names none.
    """
    try:
        if not isinstance(values, Mapping):
            raise ConfigError(f"Config section {prefix.rstrip('.') or 'top level'!r} must be a mapping. "
                              f"Received: {values!r}")
        return _build(cls, dict(values), prefix)
    except ConfigError as err:
        if source is None:
            raise
        raise ConfigError(f"{source}: {err}") from None


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def replace(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that also accepts dotted keys: replace(cfg, **{"train.epochs": 3})."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(config, head), **sub)
    return dataclasses.replace(config, **flat)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def config_hash(config: Any) -> str:
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _leaf_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """Every setting of ``cls`` with its dotted key, sub-configs walked in field order."""
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(types[f.name]):
            yield from _leaf_fields(types[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def neutral_settings() -> dict[str, Any]:
    """The settings that change nothing a run computes, by dotted key, each at the value the run keys hash."""
    return {key: f.default for key, f in _leaf_fields(RunConfig) if f.metadata.get("neutral")}


def keyed_only_off_default() -> dict[str, Any]:
    """The settings left out of the run keys at their default, by dotted key, with that default."""
    return {key: f.default for key, f in _leaf_fields(RunConfig) if not f.metadata.get("keyed_at_default", True)}


def reference_markdown() -> str:
    """The configuration reference table, generated from the dataclass fields' metadata."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `python -m vacnn_tf.config` from `vacnn_tf/config.py`; a test fails when it is stale.",
        "Set any key in a YAML file (`--config`) or on the command line (`--set section.key=value`).",
        "A value outside a key's allowed ones stops the run before any work starts.",
        "",
        "The run key, which names a run directory and decides whether `--resume` may continue it, hashes",
        "every key except those marked *neutral*: they change nothing a run computes, so a run continued",
        "with them changed is the same run. Keys marked *off default* are hashed only when not at their",
        "default.",
        "",
        "| key | default | allowed | run key | note |",
        "|---|---|---|---|---|",
    ]
    for key, f in _leaf_fields(RunConfig):
        choices = f.metadata.get("choices")
        allowed = ", ".join(f"`{c}`" for c in choices) if choices else ""
        if f.metadata.get("neutral"):
            keyed = "neutral"
        elif not f.metadata.get("keyed_at_default", True):
            keyed = "off default"
        else:
            keyed = ""
        note = f.metadata["doc"].replace("|", "\\|")
        lines.append(f"| `{key}` | `{json.dumps(f.default)}` | {allowed} | {keyed} | {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
