"""The paper's published numbers, stored once, as data, each with its table reference.

Everything here is transcribed from the paper's tables (the tables at the end of its text).
These numbers are never presented as our results: reports put them in a column labelled as
the paper's. ``tests/test_paper_numbers.py`` checks them against an independent
hand copy (tests/data/paper_tables.csv) so that a typo fails.

Class names are the package's canonical labels (Anger -> angry, Happiness -> happy, ...).
Proportions are kept as the paper prints them (0.94); accuracies of Tables 2 and 10 are in
percent, as printed.
"""

from __future__ import annotations

# Table 2: VACNN pretraining on TESS + RAVDESS (7 labels); per-class precision, recall, F1.
TABLE2_PRF: dict[str, tuple[float, float, float]] = {
    "angry": (0.94, 0.88, 0.91),
    "disgust": (0.89, 0.92, 0.90),
    "fear": (0.83, 0.94, 0.88),
    "happy": (0.90, 0.75, 0.82),
    "neutral": (0.92, 0.89, 0.91),
    "sad": (0.83, 0.90, 0.87),
    "surprise": (0.93, 0.94, 0.93),
    "average": (0.89, 0.89, 0.89),
}
TABLE2_ACCURACY = 89.03  # section 4.3, text under Table 2

# Table 3: overall accuracy (proportion) of the three VACNN + BOVW variants.
TABLE3_ACCURACY: dict[str, dict[str, float]] = {
    "ravdess": {"pure": 0.72, "finetuned": 0.83, "cbam": 0.77},
    "emodb": {"pure": 0.77, "finetuned": 0.87, "cbam": 0.81},
    "savee": {"pure": 0.69, "finetuned": 0.75, "cbam": 0.72},
}
TABLE3_VARIANTS: dict[str, str] = {
    "pure": "Pure VACNN + BOVW",
    "finetuned": "Fine-Tuned VACNN + BOVW",
    "cbam": "Fine-Tuned VACNN (CBAM) + BOVW",
}

# Tables 4-6: fine-tuned VACNN + BOVW per-class precision, recall, F1 on each target.
TABLE_PRF: dict[str, dict[str, tuple[float, float, float]]] = {
    "ravdess": {  # Table 4
        "angry": (0.77, 0.91, 0.83),
        "calm": (0.95, 0.89, 0.92),
        "disgust": (0.89, 0.85, 0.87),
        "fear": (0.91, 0.84, 0.87),
        "happy": (0.81, 0.74, 0.77),
        "neutral": (0.74, 0.88, 0.80),
        "sad": (0.74, 0.76, 0.75),
        "surprise": (0.86, 0.86, 0.85),
        "average": (0.83, 0.83, 0.83),
    },
    "emodb": {  # Table 5
        "angry": (0.94, 0.91, 0.93),
        "boredom": (0.87, 0.87, 0.88),
        "disgust": (0.95, 0.95, 0.97),
        "fear": (0.74, 0.80, 0.77),
        "happy": (0.86, 0.73, 0.79),
        "neutral": (0.80, 0.85, 0.81),
        "sad": (0.86, 0.96, 0.91),
        "average": (0.86, 0.87, 0.87),
    },
    "savee": {  # Table 6
        "angry": (0.74, 0.58, 0.65),
        "disgust": (0.81, 0.65, 0.72),
        "fear": (0.59, 0.76, 0.67),
        "happy": (0.72, 0.59, 0.65),
        "neutral": (0.88, 0.93, 0.90),
        "sad": (0.73, 0.83, 0.78),
        "surprise": (0.59, 0.65, 0.67),
        "average": (0.72, 0.71, 0.72),
    },
}
TABLE_PRF_NUMBER: dict[str, int] = {"ravdess": 4, "emodb": 5, "savee": 6}

# Tables 7-9: row-normalised confusion matrices (rows true, columns predicted), in the
# paper's class order.
CONFUSION_CLASSES: dict[str, tuple[str, ...]] = {
    "ravdess": ("angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    "emodb": ("angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"),
    "savee": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
}
CONFUSION: dict[str, tuple[tuple[float, ...], ...]] = {
    "ravdess": (  # Table 7
        (0.91, 0.00, 0.03, 0.00, 0.03, 0.00, 0.00, 0.03),
        (0.00, 0.89, 0.00, 0.00, 0.05, 0.02, 0.05, 0.00),
        (0.10, 0.02, 0.85, 0.00, 0.00, 0.00, 0.03, 0.00),
        (0.00, 0.00, 0.03, 0.84, 0.03, 0.00, 0.08, 0.02),
        (0.07, 0.00, 0.02, 0.04, 0.74, 0.02, 0.04, 0.07),
        (0.00, 0.00, 0.00, 0.00, 0.12, 0.88, 0.00, 0.00),
        (0.05, 0.03, 0.03, 0.03, 0.03, 0.08, 0.76, 0.00),
        (0.00, 0.00, 0.00, 0.06, 0.02, 0.00, 0.06, 0.86),
    ),
    "emodb": (  # Table 8
        (0.91, 0.00, 0.00, 0.04, 0.05, 0.00, 0.00),
        (0.00, 0.87, 0.00, 0.00, 0.00, 0.10, 0.03),
        (0.00, 0.00, 0.95, 0.05, 0.00, 0.00, 0.00),
        (0.04, 0.00, 0.00, 0.80, 0.00, 0.04, 0.12),
        (0.00, 0.00, 0.04, 0.15, 0.73, 0.08, 0.00),
        (0.03, 0.12, 0.00, 0.00, 0.00, 0.85, 0.00),
        (0.00, 0.00, 0.00, 0.00, 0.00, 0.04, 0.96),
    ),
    "savee": (  # Table 9
        (0.58, 0.08, 0.08, 0.13, 0.00, 0.00, 0.13),
        (0.00, 0.65, 0.07, 0.00, 0.12, 0.08, 0.08),
        (0.00, 0.05, 0.76, 0.05, 0.05, 0.05, 0.05),
        (0.22, 0.00, 0.05, 0.59, 0.00, 0.00, 0.14),
        (0.00, 0.00, 0.00, 0.00, 0.93, 0.07, 0.00),
        (0.00, 0.04, 0.00, 0.00, 0.13, 0.83, 0.00),
        (0.00, 0.30, 0.05, 0.00, 0.00, 0.00, 0.65),
    ),
}
CONFUSION_TABLE_NUMBER: dict[str, int] = {"ravdess": 7, "emodb": 8, "savee": 9}

# Table 10: overall accuracy (percent). Methods we rerun are keyed by our method id;
# literature rows are cited (other papers, other protocols) and never rerun.
TABLE10_METHODS: dict[str, str] = {
    "inception": "Inception v3",
    "mobilenet": "MobileNet",
    "resnet": "ResNet",
    "vacnn": "VACNN",
    "vacnn_bovw": "VACNN + BOVW",
}
TABLE10_ACCURACY: dict[str, dict[str, float]] = {
    "ravdess": {"inception": 69.10, "mobilenet": 71.53, "resnet": 73.26, "vacnn": 74.31, "vacnn_bovw": 83.33},
    "emodb": {"inception": 73.83, "mobilenet": 76.64, "resnet": 76.64, "vacnn": 79.44, "vacnn_bovw": 86.92},
    "savee": {"inception": 51.04, "mobilenet": 56.25, "resnet": 59.38, "vacnn": 64.58, "vacnn_bovw": 75.00},
}
# (method as cited, features, accuracy %) per dataset.
TABLE10_LITERATURE: dict[str, tuple[tuple[str, str, float], ...]] = {
    "ravdess": (
        ("Mustaqeem and Kwon [33]", "Raw spectrogram", 56.50),
        ("Milner et al. [63]", "Log-mel spectrogram", 75.60),
        ("Parry et al. [64]", "MFCC", 65.67),
    ),
    "emodb": (
        ("Zong et al. [36]", "Low-level acoustic features", 61.41),
        ("Latif et al. [41]", "Low-level acoustic features + latent code", 65.30),
        ("Mao et al. [61]", "Raw spectrogram", 71.80),
        ("Parry et al. [64]", "MFCC", 69.72),
    ),
    "savee": (
        ("Latif et al. [41]", "Low-level acoustic features + latent code", 53.20),
        ("Goel and Beigi [62]", "Low-level acoustic features", 55.55),
        ("Mao et al. [61]", "Raw spectrogram", 57.20),
        ("Parry et al. [64]", "MFCC", 72.66),
    ),
}

TARGETS: tuple[str, ...] = ("ravdess", "emodb", "savee")


def long_rows() -> list[dict[str, object]]:
    """Every number above as one long table: (table, dataset, row, column, value)."""
    rows: list[dict[str, object]] = []

    def add(table: int, dataset: str, row: str, column: str, value: float) -> None:
        rows.append({"table": table, "dataset": dataset, "row": row, "column": column, "value": value})

    for cls, prf in TABLE2_PRF.items():
        for col, v in zip(("precision", "recall", "f1"), prf):
            add(2, "tess+ravdess", cls, col, v)
    add(2, "tess+ravdess", "overall", "accuracy", TABLE2_ACCURACY)
    for ds, variants in TABLE3_ACCURACY.items():
        for variant, v in variants.items():
            add(3, ds, variant, "accuracy", v)
    for ds, classes in TABLE_PRF.items():
        for cls, prf in classes.items():
            for col, v in zip(("precision", "recall", "f1"), prf):
                add(TABLE_PRF_NUMBER[ds], ds, cls, col, v)
    for ds, matrix in CONFUSION.items():
        names = CONFUSION_CLASSES[ds]
        for true, row in zip(names, matrix):
            for pred, v in zip(names, row):
                add(CONFUSION_TABLE_NUMBER[ds], ds, true, pred, v)
    for ds, methods in TABLE10_ACCURACY.items():
        for method, v in methods.items():
            add(10, ds, method, "accuracy", v)
        for cited, _features, v in TABLE10_LITERATURE[ds]:
            add(10, ds, cited, "accuracy", v)
    return rows
