"""Readers for the four corpora of the paper (section 4.1, Table 1; the file-name conventions in docs/datasets.md).

Each reader walks a root folder recursively, parses label, speaker and (where the name holds
them) text and intensity from every audio file name, and returns a :class:`CorpusScan`: a
table of the files that follow the corpus convention plus the list of files that do not,
each with the reason. Nothing is guessed and nothing is dropped silently: a file that is
not understood, or a second copy of an utterance already read, lands in ``unmatched``.

The label column holds canonical names (``vacnn_tf.corpora.labels.CANONICAL_LABELS``); ``label_raw``
holds the emotion token exactly as the file name spells it (RAVDESS ``06``, EmoDB ``F``,
TESS ``ps``, SAVEE ``sa``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from vacnn_tf.corpora.labels import CORPUS_CLASSES, classes_for

# Audio containers libsndfile reads; any other file (README, .DS_Store, csv) is not audio and ignored.
AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3"})

COLUMNS: tuple[str, ...] = (
    "path", "corpus", "speaker", "label", "label_raw", "text", "intensity", "gender",
)

# --- RAVDESS: 03-01-EE-II-SS-RR-AA ---------------------------------------------------------
RAVDESS_EMOTIONS: dict[str, str] = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fear", "07": "disgust", "08": "surprise",
}
RAVDESS_INTENSITY: dict[str, str] = {"01": "normal", "02": "strong"}
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")

# --- EmoDB: SSTTTEV, e.g. 03a01Fa ------------------------------------------------------------
EMODB_EMOTIONS: dict[str, str] = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fear",
    "F": "happy", "T": "sad", "N": "neutral",
}
# Speaker genders from the EmoDB documentation (Burkhardt et al., 2005).
EMODB_GENDER: dict[str, str] = {
    "03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
    "12": "M", "13": "F", "14": "F", "15": "M", "16": "F",
}
# Position-based pattern, so lower-cased copies (03a01fa.wav) still parse unambiguously.
_EMODB_RE = re.compile(r"^(\d{2})([ab]\d{2})([a-z])([a-z])$", re.IGNORECASE)

# --- TESS: {OAF|YAF}_{word}_{emotion} ------------------------------------------------------
TESS_SPEAKERS: tuple[str, ...] = ("OAF", "YAF")
# Every emotion spelling seen in circulating copies, lower-cased with separators as "_".
TESS_EMOTIONS: dict[str, str] = {
    "angry": "angry", "anger": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear",
    "happy": "happy", "happiness": "happy",
    "neutral": "neutral",
    "sad": "sad", "sadness": "sad",
    "ps": "surprise", "pleasant_surprise": "surprise", "pleasant_surprised": "surprise",
    "pleasantsurprise": "surprise", "surprise": "surprise", "surprised": "surprise",
}

# --- SAVEE: DC/a01 or DC_a01 ---------------------------------------------------------------
SAVEE_SPEAKERS: tuple[str, ...] = ("DC", "JE", "JK", "KL")
SAVEE_EMOTIONS: dict[str, str] = {
    "a": "angry", "d": "disgust", "f": "fear", "h": "happy",
    "n": "neutral", "sa": "sad", "su": "surprise",
}
_SAVEE_ITEM = r"(sa|su|a|d|f|h|n)(\d{1,3})"
_SAVEE_FLAT_RE = re.compile(rf"^(dc|je|jk|kl)[_-]{_SAVEE_ITEM}$", re.IGNORECASE)
_SAVEE_DIR_RE = re.compile(rf"^{_SAVEE_ITEM}$", re.IGNORECASE)


class Unmatched(ValueError):
    """Raised by a name parser: the file does not follow the corpus convention (message = reason)."""


@dataclass
class CorpusScan:
    """The result of reading one corpus folder.

    Attributes:
        corpus: Corpus name (``ravdess``, ``emodb``, ``tess``, ``savee``).
        root: The folder that was searched.
        table: One row per usable file, columns ``COLUMNS``, sorted by path.
        unmatched: ``(path, reason)`` for every audio file that was not used.
    """

    corpus: str
    root: Path
    table: Any  # pandas.DataFrame (pandas is imported lazily)
    unmatched: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table)


def _parse_ravdess(path: Path) -> dict[str, Any]:
    match = _RAVDESS_RE.match(path.stem)
    if not match:
        raise Unmatched("name is not RAVDESS MM-VV-EE-II-SS-RR-AA (seven two-digit fields)")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    if modality != "03":
        kind = {"01": "audio-video", "02": "video-only"}.get(modality, f"unknown ({modality})")
        raise Unmatched(f"RAVDESS modality {modality} is {kind}; only 03 (audio-only) is used")
    if channel != "01":
        kind = "song" if channel == "02" else f"unknown ({channel})"
        raise Unmatched(f"RAVDESS vocal channel {channel} is {kind}; only 01 (speech) is used")
    if emotion not in RAVDESS_EMOTIONS:
        raise Unmatched(f"RAVDESS emotion code {emotion} is not one of 01-08")
    if intensity not in RAVDESS_INTENSITY:
        raise Unmatched(f"RAVDESS intensity code {intensity} is not 01 or 02")
    if not 1 <= int(actor) <= 24:
        raise Unmatched(f"RAVDESS actor {actor} is not in 01-24")
    return {
        "speaker": actor, "label": RAVDESS_EMOTIONS[emotion], "label_raw": emotion,
        "text": statement, "intensity": RAVDESS_INTENSITY[intensity],
        "gender": "M" if int(actor) % 2 else "F",  # RAVDESS: odd actors male, even female
        "_key": (actor, emotion, intensity, statement, repetition),
    }


def _parse_emodb(path: Path) -> dict[str, Any]:
    match = _EMODB_RE.match(path.stem)
    if not match:
        raise Unmatched("name is not EmoDB SSTTTEV (e.g. 03a01Fa: speaker, text, emotion, version)")
    speaker, text, emotion, version = match.groups()
    emotion = emotion.upper()
    if emotion not in EMODB_EMOTIONS:
        raise Unmatched(f"EmoDB emotion letter {emotion!r} is not one of {''.join(EMODB_EMOTIONS)}")
    return {
        "speaker": speaker, "label": EMODB_EMOTIONS[emotion], "label_raw": emotion,
        "text": text.lower(), "intensity": None, "gender": EMODB_GENDER.get(speaker),
        "_key": (speaker, text.lower(), emotion, version.lower()),
    }


def _tess_tokens(name: str) -> list[str]:
    # Copies differ in case and in using spaces or hyphens where the original has "_".
    return [t for t in re.split(r"[_\s\-]+", name.strip().lower()) if t]


def _tess_folder(path: Path) -> Optional[tuple[str, str]]:
    """(speaker, canonical emotion) named by the parent folder, e.g. ``OAF_Pleasant_surprise``."""
    tokens = _tess_tokens(path.parent.name)
    if len(tokens) >= 2 and tokens[0].upper() in TESS_SPEAKERS:
        emotion = TESS_EMOTIONS.get("_".join(tokens[1:]))
        if emotion is not None:
            return tokens[0].upper(), emotion
    return None


def _parse_tess(path: Path) -> dict[str, Any]:
    tokens = _tess_tokens(path.stem)
    if len(tokens) < 3:
        raise Unmatched("name is not TESS {OAF|YAF}_{word}_{emotion}")
    speaker, word, emotion_raw = tokens[0].upper(), tokens[1], "_".join(tokens[2:])
    if speaker not in TESS_SPEAKERS:
        raise Unmatched(f"TESS speaker token {tokens[0]!r} is not OAF or YAF")
    if emotion_raw not in TESS_EMOTIONS:
        raise Unmatched(f"TESS emotion token {emotion_raw!r} is not one of {sorted(TESS_EMOTIONS)}")
    label = TESS_EMOTIONS[emotion_raw]
    folder = _tess_folder(path)
    if folder is not None and folder != (speaker, label):
        # A file filed under the wrong folder: which one is right is not ours to guess.
        raise Unmatched(
            f"name says {speaker}/{label} but folder {path.parent.name!r} says {folder[0]}/{folder[1]}"
        )
    return {
        "speaker": speaker, "label": label, "label_raw": emotion_raw, "text": word,
        "intensity": None, "gender": "F",  # both TESS speakers are women
        "_key": (speaker, word, label),
    }


def _parse_savee(path: Path) -> dict[str, Any]:
    flat = _SAVEE_FLAT_RE.match(path.stem)
    if flat:
        speaker, emotion, number = flat.groups()
    else:
        nested = _SAVEE_DIR_RE.match(path.stem)
        if not nested:
            raise Unmatched("name is not SAVEE {DC|JE|JK|KL}_{a|d|f|h|n|sa|su}NN or SPEAKER/{emotion}NN")
        speaker = path.parent.name
        if speaker.upper() not in SAVEE_SPEAKERS:
            raise Unmatched(
                f"SAVEE item {path.stem!r} has no speaker prefix and its folder {speaker!r} "
                f"is not one of {', '.join(SAVEE_SPEAKERS)}"
            )
        emotion, number = nested.groups()
    speaker, emotion = speaker.upper(), emotion.lower()
    item = f"{emotion}{int(number):02d}"
    return {
        "speaker": speaker, "label": SAVEE_EMOTIONS[emotion], "label_raw": emotion, "text": item,
        "intensity": None, "gender": "M",  # the four SAVEE speakers are men
        "_key": (speaker, item),
    }


PARSERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "ravdess": _parse_ravdess, "emodb": _parse_emodb, "tess": _parse_tess, "savee": _parse_savee,
}
CORPUS_TITLES: dict[str, str] = {"ravdess": "RAVDESS", "emodb": "EmoDB", "tess": "TESS", "savee": "SAVEE"}


def _check_name(name: str) -> str:
    if name not in PARSERS:
        raise ValueError(f"Unknown corpus. Expected one of {sorted(PARSERS)}. Received: corpus={name!r}")
    return name


def audio_files(root: str | Path) -> list[Path]:
    """Every audio file under ``root`` (recursively, following symlinked folders once), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Corpus folder not found or not a folder: {root}")
    found: list[Path] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop or a second link to the same folder
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        # a fixed walk order, real folders before links to them: which alias is kept must not depend on the filesystem
        dirnames.sort(key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))
        for name in filenames:
            if os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES:
                found.append(Path(os.path.abspath(os.path.join(dirpath, name))))
    return sorted(found, key=str)


def read_corpus(name: str, root: str | Path) -> CorpusScan:
    """Read one corpus folder.

    Args:
        name: ``ravdess``, ``emodb``, ``tess`` or ``savee``.
        root: Folder searched recursively (any layout: ``wav/``, ``Actor_01/``, ``AudioData/DC/``,
            flattened copies...).

    Returns:
        A :class:`CorpusScan`. ``table`` has the columns ``COLUMNS`` (``path`` absolute), sorted by
        path; ``unmatched`` lists ``(path, reason)`` for files that do not follow the convention,
        are macOS resource forks, or repeat an utterance already read under another path.

    Raises:
        ValueError: unknown corpus name.
        FileNotFoundError: ``root`` is not a folder.
    """
    import pandas as pd

    parse = PARSERS[_check_name(name)]
    rows: list[dict[str, Any]] = []
    unmatched: list[tuple[str, str]] = []
    first_seen: dict[tuple, str] = {}
    for path in audio_files(root):
        if path.name.startswith("._"):
            unmatched.append((str(path), "macOS resource-fork file (._*), not audio"))
            continue
        try:
            info = parse(path)
        except Unmatched as err:
            unmatched.append((str(path), str(err)))
            continue
        key = info.pop("_key")
        if key in first_seen:
            # Circulating copies often hold the corpus twice (nested re-zips); count it once.
            unmatched.append((str(path), f"duplicate of {first_seen[key]} (same utterance)"))
            continue
        first_seen[key] = str(path)
        rows.append({"path": str(path), "corpus": name, **info})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    return CorpusScan(corpus=name, root=Path(root), table=table, unmatched=unmatched)


def corpus_root(data_root: str | Path, name: str) -> Path:
    """The folder of corpus ``name`` inside ``data_root`` (``data_root/name``).

    Raises:
        FileNotFoundError: naming the expected folder and what ``data_root`` holds.
    """
    path = Path(data_root) / _check_name(name)
    if not path.is_dir():
        present = sorted(p.name for p in Path(data_root).iterdir()) if Path(data_root).is_dir() else []
        raise FileNotFoundError(
            f"Corpus {name!r} expected in folder {path}, which does not exist. "
            f"{data_root} holds: {present or 'nothing (or is missing)'}"
        )
    return path


def find_corpus_dir(root: str | Path, name: str) -> Path:
    """Accept either the corpus folder itself or a data root holding ``name/``."""
    root = Path(root)
    inner = root / _check_name(name)
    return inner if inner.is_dir() else root


def corpus_stats(name: str, root: str | Path) -> dict[str, Any]:
    """Counts, sample rates and duration of a corpus folder (``vacnn corpus-stats``).

    Args:
        name: Corpus name.
        root: Corpus folder (searched recursively).

    Returns:
        ``{"corpus", "files", "classes", "speakers", "sample_rates", "total_seconds", "unmatched"}``:
        ``classes`` maps every class of the corpus (``labels.CORPUS_CLASSES`` order) to its count,
        ``speakers`` maps speaker id to count, ``sample_rates`` maps rate (int, Hz) to file count,
        ``unmatched`` is a list of ``{"path", "reason"}``. Files whose header cannot be read are
        moved to ``unmatched`` and left out of every count.
    """
    import soundfile as sf

    scan = read_corpus(name, root)
    unmatched = list(scan.unmatched)
    keep: list[bool] = []
    rates: dict[int, int] = {}
    seconds = 0.0
    for path in scan.table["path"]:
        try:
            info = sf.info(path)
        except Exception as err:  # libsndfile raises several types; any of them means unreadable
            unmatched.append((path, f"unreadable audio: {err}"))
            keep.append(False)
            continue
        keep.append(True)
        rates[int(info.samplerate)] = rates.get(int(info.samplerate), 0) + 1
        seconds += float(info.frames) / float(info.samplerate)
    table = scan.table[keep] if len(keep) else scan.table
    counts = table["label"].value_counts()
    classes = {c: int(counts.get(c, 0)) for c in classes_for(name)}
    speakers = {str(s): int(n) for s, n in sorted(table["speaker"].value_counts().items())}
    return {
        "corpus": name,
        "files": int(len(table)),
        "classes": classes,
        "speakers": speakers,
        "sample_rates": dict(sorted(rates.items())),
        "total_seconds": round(seconds, 3),
        "unmatched": [{"path": p, "reason": r} for p, r in sorted(unmatched)],
    }


__all__ = [
    "AUDIO_SUFFIXES", "COLUMNS", "CORPUS_CLASSES", "CORPUS_TITLES", "CorpusScan", "Unmatched",
    "audio_files", "corpus_root", "corpus_stats", "find_corpus_dir", "read_corpus",
]
