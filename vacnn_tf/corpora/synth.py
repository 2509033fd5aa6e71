"""A small synthetic emotional-speech corpus in the four official layouts (tests, demo, labs).

``generate`` writes ``ravdess/``, ``emodb/``, ``tess/`` and ``savee/`` trees whose file names follow
each corpus's convention (docs/datasets.md) at each corpus's native sample rate, so the real readers and
the whole pipeline run on them unchanged. Every utterance is a source-filter "voice": a harmonic
source whose pitch follows a contour, shaped by vowel formants per syllable, with consonant noise
bursts, breath noise and a quiet room-noise floor.

Classes differ the way acted emotions do in the prosody literature (Banse & Scherer 1996;
Scherer 2003): pitch level and range, contour shape, pitch accents, syllable rate, loudness
(visible against the room-noise floor), spectral tilt, jitter and shimmer, breathiness, and for
two classes a voice quality of their own (a tremor in fear, a creaky voice in disgust). Every two
classes differ in several of these cues at once (``PROSODY``), so no single cue decides. Speakers
differ in voice (base f0, vocal-tract length via formant scaling, breathiness, tilt, tempo,
loudness). Every utterance draws its own duration (from the same range for every class),
syllable timing, vowels and perturbations, so no two files are copies and neither duration nor
level is the same for every file of a class.

Generation is deterministic: each file has its own random generator seeded from
(seed, corpus, class, item), so the same seed gives bitwise-identical files.
"""

from __future__ import annotations

import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from vacnn_tf.corpora.labels import CORPUS_CLASSES
from vacnn_tf.corpora.readers import EMODB_EMOTIONS, RAVDESS_EMOTIONS, SAVEE_EMOTIONS, SAVEE_SPEAKERS
from vacnn_tf.storage import read_json, write_json

SYNTH_VERSION = 2  # bump when the signal model changes, so old trees are regenerated
CORPORA: tuple[str, ...] = ("ravdess", "emodb", "tess", "savee")
NATIVE_RATES: dict[str, int] = {"ravdess": 48000, "emodb": 16000, "tess": 24414, "savee": 44100}
INTERNAL_RATE = 16000  # voices are rendered here, then resampled to the corpus rate (content < 8 kHz)
MANIFEST = "synth.json"


@dataclass(frozen=True)
class Prosody:
    """Per-class voice settings; semitones (st) are relative to the speaker's base f0."""

    f0_scale: float  # pitch level
    f0_range: float  # st, total excursion of the utterance contour
    contour: str  # fall|rise|rise_fall|fall_rise|flat|wavy
    accent: float  # st, pitch accent per syllable
    rate: float  # syllables per second
    energy_db: float  # loudness against the fixed noise floor
    tilt_db: float  # source spectral slope per octave (less negative = brighter)
    jitter: float  # cycle-to-cycle f0 perturbation (fraction)
    breath: float  # aspiration noise relative to the voiced part
    tremor: float = 0.0  # st of a 6-8 Hz pitch tremor (fear)
    creak: float = 0.0  # depth of period-doubling (creaky voice): subharmonics between the harmonics


# Every two classes differ in at least four cues by a margin the log-mel image shows (1.5 st of
# pitch, 2 st of range, the contour, 0.6 syllables/s, 3 dB of loudness or tilt, breathiness,
# jitter, tremor or creak): tests/test_synth.py checks it. Pitch level alone would not do: the
# speakers' base f0 spans an octave.
PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(1.05, 3.0, "fall", 1.0, 4.4, 0.0, -11.0, 0.005, 0.03),
    "calm": Prosody(0.95, 2.0, "rise_fall", 0.5, 3.0, -5.0, -16.0, 0.004, 0.16),
    "happy": Prosody(1.35, 9.0, "wavy", 3.0, 5.4, 3.0, -7.0, 0.010, 0.03),
    "sad": Prosody(0.80, 1.5, "fall", 0.3, 2.3, -11.0, -18.0, 0.020, 0.20),
    "angry": Prosody(1.15, 4.0, "fall", 3.5, 6.0, 9.0, -2.0, 0.025, 0.02),
    "fear": Prosody(1.55, 3.0, "rise_fall", 1.0, 6.8, -2.0, -10.0, 0.035, 0.12, tremor=1.2),
    "disgust": Prosody(0.80, 5.0, "fall_rise", 1.5, 2.7, 1.0, -13.0, 0.040, 0.10, creak=0.8),
    "surprise": Prosody(1.45, 14.0, "rise", 2.0, 3.3, 0.0, -10.0, 0.008, 0.10),
    "boredom": Prosody(0.84, 0.6, "flat", 0.2, 3.3, -3.0, -13.0, 0.004, 0.04),
}

# Vowel formants F1, F2, F3 (Hz, adult male; Peterson & Barney 1952), scaled per speaker.
VOWELS: tuple[tuple[float, float, float], ...] = (
    (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
    (570, 840, 2410), (660, 1720, 2410), (440, 1020, 2240), (490, 1350, 1690),
)


@dataclass(frozen=True)
class Voice:
    f0: float  # Hz
    formant_scale: float  # shorter vocal tract -> higher formants
    breath: float
    tilt_db: float
    rate_scale: float
    level_db: float  # vocal effort / distance to the microphone


# --- corpus layouts --------------------------------------------------------------------------
EMODB_SPEAKERS = ("03", "08", "11", "16", "09", "10", "12", "13", "14", "15")  # real EmoDB ids
EMODB_FEMALE = {"08", "09", "13", "14", "16"}
EMODB_TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
TESS_FOLDERS = {  # folder spellings of the widely circulated copy, case quirks included
    ("OAF", "angry"): "OAF_angry", ("OAF", "disgust"): "OAF_disgust", ("OAF", "fear"): "OAF_Fear",
    ("OAF", "happy"): "OAF_happy", ("OAF", "neutral"): "OAF_neutral",
    ("OAF", "surprise"): "OAF_Pleasant_surprise", ("OAF", "sad"): "OAF_Sad",
    ("YAF", "angry"): "YAF_angry", ("YAF", "disgust"): "YAF_disgust", ("YAF", "fear"): "YAF_fear",
    ("YAF", "happy"): "YAF_happy", ("YAF", "neutral"): "YAF_neutral",
    ("YAF", "surprise"): "YAF_pleasant_surprised", ("YAF", "sad"): "YAF_sad",
}
TESS_WORDS = tuple(
    "back bar base bath bean beg bite boat bone book bought burn cab calm came cause chain chair "
    "chalk chat check cheek chief choice cool dab date dead death deep dime dip ditch dodge dog "
    "doll door fail fall far fat fit five food gap gas gaze germ get gin goal good goose gun half "
    "hall hash hate have haze hire hit hole home hurl hush jail jar join judge jug juice keen keep "
    "kill king kite knock late laud lean learn lease lid life limb live loaf long lore lose lot love "
    "luck make match merge mess met mill".split()
)


def _speakers(corpus: str, per_class: int) -> list[str]:
    """Speakers used for ``per_class`` items per class: a few, more when the layout needs them."""
    if corpus == "ravdess":  # 4 takes per actor and class fit the neutral naming scheme
        return [f"{a:02d}" for a in range(1, min(24, max(4, math.ceil(per_class / 4))) + 1)]
    if corpus == "emodb":  # 10 texts x 3 versions per speaker and class
        return list(EMODB_SPEAKERS[: min(10, max(4, math.ceil(per_class / 30)))])
    if corpus == "tess":
        return ["OAF", "YAF"]
    return list(SAVEE_SPEAKERS)


def _capacity(corpus: str) -> int:
    return {"ravdess": 24 * 4, "emodb": 10 * 30, "tess": 2 * len(TESS_WORDS), "savee": 4 * 99}[corpus]


def _relpath(corpus: str, label: str, speaker: str, k: int) -> tuple[str, str]:
    """(path inside the corpus folder, text id) of the k-th item of ``speaker`` for ``label``."""
    if corpus == "ravdess":
        code = {v: c for c, v in RAVDESS_EMOTIONS.items()}[label]
        if label == "neutral":  # RAVDESS has no strong-intensity neutral
            intensity, statement, rep = 1, k % 2 + 1, k // 2 + 1
        else:
            intensity, statement, rep = k % 2 + 1, (k // 2) % 2 + 1, k // 4 + 1
        name = f"03-01-{code}-{intensity:02d}-{statement:02d}-{rep:02d}-{speaker}.wav"
        return f"Actor_{speaker}/{name}", f"statement{statement}"
    if corpus == "emodb":
        letter = {v: c for c, v in EMODB_EMOTIONS.items()}[label]
        text = EMODB_TEXTS[k % 10]
        return f"wav/{speaker}{text}{letter}{'abc'[k // 10]}.wav", text
    if corpus == "tess":
        token = "ps" if label == "surprise" else label
        return f"{TESS_FOLDERS[(speaker, label)]}/{speaker}_{TESS_WORDS[k]}_{token}.wav", TESS_WORDS[k]
    prefix = {v: c for c, v in SAVEE_EMOTIONS.items()}[label]
    return f"AudioData/{speaker}/{prefix}{k + 1:02d}.wav", f"{prefix}{k + 1:02d}"


def _voice(seed: int, corpus: str, speaker: str) -> Voice:
    female = {
        "ravdess": speaker.isdigit() and int(speaker) % 2 == 0,
        "emodb": speaker in EMODB_FEMALE, "tess": True, "savee": False,
    }[corpus]
    rng = np.random.default_rng([seed, 7, zlib.crc32(f"{corpus}/{speaker}".encode())])
    if corpus == "tess":  # the older TESS speaker has the lower voice
        f0 = 175.0 if speaker == "OAF" else 215.0
        f0 *= rng.uniform(0.97, 1.03)
    else:
        f0 = rng.uniform(180, 235) if female else rng.uniform(95, 140)
    return Voice(
        f0=float(f0),
        formant_scale=float(rng.uniform(1.12, 1.22) if female else rng.uniform(0.93, 1.05)),
        breath=float(rng.uniform(0.02, 0.08) + (0.03 if female else 0.0)),
        tilt_db=float(rng.uniform(-2.0, 2.0)),
        rate_scale=float(rng.uniform(0.9, 1.1)),
        level_db=float(rng.uniform(-2.0, 2.0)),
    )


# --- signal model ----------------------------------------------------------------------------
def _contour(shape: str, x: np.ndarray, phase: float) -> np.ndarray:
    """Pitch contour in [-0.5, 0.5] (times the class range in semitones) over utterance time x in [0, 1]."""
    if shape == "fall":
        return 0.5 - x
    if shape == "rise":
        return x**1.5 - 0.5
    if shape == "rise_fall":
        return np.sin(np.pi * x) - 0.5
    if shape == "fall_rise":
        return 0.5 * np.cos(2 * np.pi * x)
    if shape == "wavy":
        return 0.5 * np.sin(2 * np.pi * 2.0 * x + phase)
    return np.zeros_like(x)


def _smooth_noise(rng: np.random.Generator, n: int, step: int) -> np.ndarray:
    """Unit-variance noise with a new value every ``step`` samples, linearly interpolated."""
    knots = rng.standard_normal(n // step + 2)
    return np.interp(np.arange(n) / step, np.arange(len(knots)), knots)


def _resonator(f: float, bw: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Klatt two-pole resonator (unit gain at 0 Hz)."""
    r = math.exp(-math.pi * bw / sr)
    a = np.array([1.0, -2.0 * r * math.cos(2 * math.pi * f / sr), r * r])
    return np.array([a.sum()]), a


def _utterance(rng: np.random.Generator, voice: Voice, pro: Prosody, vowel_seed: int) -> np.ndarray:
    """One utterance at INTERNAL_RATE, float64, speech peak between about -28 and -0.5 dBFS.

    The helpers draw from ``rng`` in a fixed order, so a seed gives the same file every time.
    """
    from scipy.signal import lfilter

    n, edges = _syllables(rng, voice, pro)
    phase, f0_max = _pitch_phase(rng, voice, pro, n, edges)
    source, aspiration = _glottal_source(rng, voice, pro, phase, f0_max)
    speech = _articulate(rng, voice, pro, source, aspiration, edges, vowel_seed)
    speech /= np.abs(speech).max() + 1e-9
    speech *= 10 ** ((-13.0 + pro.energy_db + voice.level_db + rng.uniform(-1.5, 1.5)) / 20)
    # Room noise at a fixed absolute level: louder classes show a higher SNR in the image.
    room = lfilter([1.0], [1.0, -0.95], rng.standard_normal(n)) * 10 ** (rng.uniform(-68, -64) / 20)
    return speech + room


def _syllables(rng: np.random.Generator, voice: Voice, pro: Prosody) -> tuple[int, np.ndarray]:
    """The utterance's length in samples and its syllable boundaries (sample indices)."""
    sr = INTERNAL_RATE
    duration = rng.uniform(1.3, 2.3)
    n = int(duration * sr)
    lead, trail = rng.uniform(0.06, 0.2), rng.uniform(0.06, 0.2)
    span = duration - lead - trail
    rate = pro.rate * voice.rate_scale * rng.uniform(0.9, 1.1)
    n_syl = max(2, int(round(span * rate)))
    # Equal slots with jittered edges: speech is not a metronome.
    edges = np.linspace(lead, lead + span, n_syl + 1)
    edges[1:-1] += rng.uniform(-0.2, 0.2, n_syl - 1) * (span / n_syl)
    return n, (edges * sr).astype(int)


def _pitch_phase(rng: np.random.Generator, voice: Voice, pro: Prosody, n: int,
                 edges: np.ndarray) -> tuple[np.ndarray, float]:
    """The glottal phase of a pitch track (contour + per-syllable accents + tremor, then jitter)
    and the track's highest f0 in Hz."""
    sr = INTERNAL_RATE
    x = np.arange(n) / n
    st = pro.f0_range * rng.uniform(0.8, 1.2) * _contour(pro.contour, x, rng.uniform(0, 2 * np.pi))
    accents = np.zeros(n)
    for a, b in zip(edges[:-1], edges[1:]):
        accents[a:b] = pro.accent * rng.uniform(0.2, 1.0) * np.sin(np.linspace(0, np.pi, b - a))
    st = st + accents
    if pro.tremor:
        st += pro.tremor * np.sin(2 * np.pi * rng.uniform(6.0, 8.0) * np.arange(n) / sr)
    f0 = voice.f0 * pro.f0_scale * rng.uniform(0.96, 1.04) * 2.0 ** (st / 12.0)
    f0 *= 1.0 + pro.jitter * _smooth_noise(rng, n, sr // 250)
    return 2 * np.pi * np.cumsum(f0) / sr, float(f0.max())


def _glottal_source(rng: np.random.Generator, voice: Voice, pro: Prosody, phase: np.ndarray,
                    f0_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The harmonic source (spectral tilt, shimmer, creak) and the aspiration noise beside it."""
    from scipy.signal import butter, lfilter

    sr = INTERNAL_RATE
    n = len(phase)
    # Amplitude k^(tilt / 6.02): harmonics halve per octave at -6 dB/oct.
    tilt = pro.tilt_db + voice.tilt_db + rng.uniform(-1.5, 1.5)
    source = np.zeros(n)
    for k in range(1, int(0.95 * (sr / 2) / f0_max) + 1):
        source += k ** (tilt / 6.02) * np.sin(k * phase)
    source *= 1.0 + 2.5 * pro.jitter * _smooth_noise(rng, n, sr // 200)  # shimmer grows with jitter
    if pro.creak:  # every other glottal pulse weaker: components at f0 / 2 between the harmonics
        source *= 1.0 + pro.creak * rng.uniform(0.6, 1.0) * np.cos(phase / 2)
    aspiration = lfilter(*butter(2, 1500 / (sr / 2), "highpass"), rng.standard_normal(n))
    return source, aspiration


def _articulate(rng: np.random.Generator, voice: Voice, pro: Prosody, source: np.ndarray,
                aspiration: np.ndarray, edges: np.ndarray, vowel_seed: int) -> np.ndarray:
    """Syllables: a vowel (three formant resonators) per voiced stretch, with consonant noise before."""
    from scipy.signal import butter, lfilter

    sr = INTERNAL_RATE
    speech = np.zeros(len(source))
    vowel_rng = np.random.default_rng(vowel_seed)  # the "text" fixes the vowel sequence
    bw_scale = rng.uniform(0.9, 1.1) * (1.3 if pro.breath > 0.1 else 1.0)
    hp = butter(2, 2500 / (sr / 2), "highpass")
    for a, b in zip(edges[:-1], edges[1:]):
        onset = int(rng.uniform(0.02, 0.06) * sr)
        voiced = slice(min(a + onset, b - 1), a + int((b - a) * rng.uniform(0.78, 0.95)))
        length = voiced.stop - voiced.start
        if length < 32:
            continue
        f1, f2, f3 = (f * voice.formant_scale for f in VOWELS[vowel_rng.integers(len(VOWELS))])
        seg = source[voiced] + (voice.breath + pro.breath) * 3.0 * aspiration[voiced]
        for f, bw in ((f1, 80.0), (f2, 100.0), (f3, 150.0)):
            seg = lfilter(*_resonator(f, bw * bw_scale, sr), seg)
        ramp = min(length // 3, int(0.03 * sr))
        env = np.ones(length)
        env[:ramp] = np.sin(np.linspace(0, np.pi / 2, ramp)) ** 2
        env[length - ramp :] = np.cos(np.linspace(0, np.pi / 2, ramp)) ** 2
        stress = 10 ** (rng.uniform(-2.0, 1.0) / 20)
        speech[voiced] += seg * env * stress / (np.abs(seg).max() + 1e-9)
        kind = rng.integers(3)  # 0 fricative, 1 plosive burst, 2 sonorant (no noise)
        if kind < 2:
            burst_len = onset if kind == 0 else min(onset, int(0.015 * sr))
            burst = lfilter(*hp, rng.standard_normal(burst_len)) * np.hanning(burst_len)
            speech[a : a + burst_len] += burst * 10 ** (rng.uniform(-34, -24) / 20)
    return speech


def _render(seed: int, corpus: str, label: str, item: int, speaker: str, text: str) -> np.ndarray:
    rng = np.random.default_rng([seed, CORPORA.index(corpus), CORPUS_CLASSES[corpus].index(label), item])
    wave = _utterance(rng, _voice(seed, corpus, speaker), PROSODY[label], zlib.crc32(text.encode()))
    rate = NATIVE_RATES[corpus]
    if rate != INTERNAL_RATE:
        import soxr

        wave = soxr.resample(wave, INTERNAL_RATE, rate, quality="HQ")
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def plan(corpus: str, per_class: int) -> list[tuple[str, int, str, str, str]]:
    """``(label, item, speaker, relative path, text id)`` for every file of one synthetic corpus.

    Items of a class go round-robin over the speakers, so every speaker gets every class once
    ``per_class`` reaches the number of speakers.
    """
    if corpus not in CORPORA:
        raise ValueError(f"Unknown corpus. Expected one of {list(CORPORA)}. Received: corpus={corpus!r}")
    if not 1 <= per_class <= _capacity(corpus):
        raise ValueError(
            f"per_class must be between 1 and {_capacity(corpus)} for {corpus} (its naming scheme "
            f"runs out of distinct names beyond that). Received: per_class={per_class}"
        )
    speakers = _speakers(corpus, per_class)
    rows = []
    for offset, label in enumerate(CORPUS_CLASSES[corpus]):
        for item in range(per_class):
            # The start speaker rotates with the class, so every speaker appears even when
            # per_class is below the number of speakers; item // n stays unique per speaker.
            speaker, k = speakers[(item + offset) % len(speakers)], item // len(speakers)
            rows.append((label, item, speaker, *_relpath(corpus, label, speaker, k)))
    return rows


def _write_corpus(out: Path, corpus: str, per_class: int, seed: int) -> None:
    import soundfile as sf

    for label, item, speaker, rel, text in plan(corpus, per_class):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        wave = _render(seed, corpus, label, item, speaker, text)
        sf.write(path, wave, NATIVE_RATES[corpus], subtype="PCM_16", format="WAV")


def generate(
    out_dir: str | Path,
    per_class: int = 6,
    seed: int = 42,
    corpora: Iterable[str] = CORPORA,
) -> dict[str, Path]:
    """Write the synthetic corpus (work already done with the same settings is skipped).

    Args:
        out_dir: Folder that receives ``ravdess/``, ``emodb/``, ``tess/``, ``savee/`` and ``synth.json``.
        per_class: Utterances per class in each corpus, spread round-robin over its speakers
            (default 6: 174 files, a few seconds).
        seed: Drives every random choice; the same seed gives bitwise-identical files.
        corpora: Which corpora to write.

    Returns:
        ``{corpus: folder}`` for the requested corpora.

    Raises:
        ValueError: unknown corpus or ``per_class`` outside what the naming scheme allows.
        FileExistsError: a corpus folder exists that this function did not write.
    """
    out = Path(out_dir)
    names = [corpora] if isinstance(corpora, str) else list(dict.fromkeys(corpora))
    for name in names:
        plan(name, per_class)  # validates name and per_class before anything is written
    manifest_path = out / MANIFEST
    manifest: dict = read_json(manifest_path) if manifest_path.is_file() else {"corpora": {}}
    wanted = {"version": SYNTH_VERSION, "seed": seed, "per_class": per_class, "complete": True}
    result: dict[str, Path] = {}
    for name in names:
        folder = out / name
        result[name] = folder
        previous: Optional[dict] = manifest["corpora"].get(name)
        if previous == wanted and folder.is_dir():
            continue
        if folder.exists() and any(folder.iterdir()):
            if previous is None:
                raise FileExistsError(
                    f"{folder} exists and was not written by vacnn synth (no entry in {manifest_path}); "
                    "choose an empty output folder."
                )
            shutil.rmtree(folder)  # ours, from other settings or an interrupted run
        manifest["corpora"][name] = {**wanted, "complete": False}
        write_json(manifest_path, manifest)
        _write_corpus(folder, name, per_class, seed)
        manifest["corpora"][name] = wanted
        write_json(manifest_path, manifest)
    return result
