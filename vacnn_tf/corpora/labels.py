"""Canonical emotion labels and the one place where corpus label sets are mapped."""

from __future__ import annotations

# Canonical names used everywhere in the package (tables, label maps, exported assets).
CANONICAL_LABELS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom",
)

# Class sets per corpus, in a fixed order so label indices are stable across runs.
CORPUS_CLASSES: dict[str, tuple[str, ...]] = {
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"),
    "emodb": ("neutral", "happy", "sad", "angry", "fear", "disgust", "boredom"),
    "tess": ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"),
    "savee": ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"),
}

# Pretraining on TESS + RAVDESS uses 7 labels (section 4.2): RAVDESS calm counts as neutral.
# TESS pleasant surprise is already read as canonical "surprise" by the TESS reader.
PRETRAIN_CORPORA: tuple[str, ...] = ("tess", "ravdess")  # the paper's source corpora (section 4.2)
PRETRAIN_CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
PRETRAIN_LABEL_MAP: dict[str, str] = {"calm": "neutral"}


def pretrain_label(label: str) -> str:
    """Map a canonical label onto the 7-label pretraining set (calm -> neutral)."""
    mapped = PRETRAIN_LABEL_MAP.get(label, label)
    if mapped not in PRETRAIN_CLASSES:
        raise ValueError(
            f"Label {label!r} has no place in the pretraining label set {PRETRAIN_CLASSES}."
        )
    return mapped


def classes_for(corpus: str) -> tuple[str, ...]:
    """The ordered class names of a corpus (its fine-tuning label set)."""
    try:
        return CORPUS_CLASSES[corpus]
    except KeyError:
        raise ValueError(
            f"Unknown corpus. Expected one of {sorted(CORPUS_CLASSES)}. Received: corpus={corpus!r}"
        ) from None
