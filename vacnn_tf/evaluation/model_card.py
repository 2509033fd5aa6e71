"""The model card an exported model carries (``assets/MODEL_CARD.md``), written from its run's files.

What it states comes from the run directory, never from memory: the configuration
(``config.yaml``), what ran (``manifest.json``), the metrics over folds (``summary.json`` and
``metrics/summary.csv``) and the exported fold's own ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from vacnn_tf.config import RunConfig
from vacnn_tf.corpora.labels import PRETRAIN_CORPORA
from vacnn_tf.corpora.readers import CORPUS_TITLES
from vacnn_tf.storage import read_json

PAPER_CITATION = (
    'Minji Seo and M. Kim, "Fusing Visual Attention CNN and Bag of Visual Words for Cross-Corpus '
    'Speech Emotion Recognition", Sensors 20(19), article 5559, 2020, doi:10.3390/s20195559'
)
PAPER_DOI = "10.3390/s20195559"

# What each corpus is (docs/datasets.md): every one is acted speech by a few speakers.
CORPUS_FACTS: dict[str, dict[str, str]] = {
    "ravdess": {"language": "English", "speech": "acted, 24 actors"},
    "emodb": {"language": "German", "speech": "acted, 10 speakers"},
    "tess": {"language": "English", "speech": "acted, 2 speakers"},
    "savee": {"language": "English", "speech": "acted, 4 male speakers"},
}


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%"


def _pm(mean: Any, std: Any) -> str:
    return f"{_pct(mean)} +- {100 * float(std):.1f}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _seen_corpora(target: str, variant: str) -> list[str]:
    seen = [target]
    if variant == "finetuned":
        seen += [c for c in PRETRAIN_CORPORA if c != target]
    return seen


def _metrics_section(summary: Mapping[str, Any], fold_metrics: Mapping[str, Any], macro_f1: Optional[tuple[float, float]],
                     partial: bool) -> list[str]:
    folds = summary.get("folds", [])
    # how many folds the whole protocol has depends on the corpus (EmoDB's speaker protocol: 10), so
    # a run of some of them says which it ran rather than a total
    count = f"{len(folds)} fold{'s' if len(folds) != 1 else ''}" + (
        ", part of the protocol's folds (protocol.first_fold / max_folds)" if partial else "")
    lines = ["## Metrics", "",
             f"Test folds of the run ({count}), each scored once by the model "
             "selected on its validation part; mean +- sample standard deviation over folds:", "",
             f"- accuracy: {_pm(summary['accuracy_mean'], summary['accuracy_std'])}",
             f"- UAR (unweighted average recall): {_pm(summary['uar_mean'], summary['uar_std'])}"]
    if macro_f1 is not None:
        lines.append(f"- macro-F1: {_pm(*macro_f1)}")
    lines += ["", "| fold | test utterances | accuracy | UAR |", "|---|---|---|---|"]
    lines += [f"| {f['fold']} | {f.get('test', '')} | {_pct(f['accuracy'])} | {_pct(f['uar'])} |" for f in folds]
    lines += ["", f"This model is fold {fold_metrics['fold']}: test accuracy {_pct(fold_metrics['accuracy'])}, "
              f"UAR {_pct(fold_metrics['uar'])}"
              + (f", validation accuracy {_pct(fold_metrics['best_val_accuracy'])}"
                 if fold_metrics.get("best_val_accuracy") is not None else "") + "."]
    if summary.get("audit"):
        lines += ["", summary["audit"]["note"]]
    return lines + [""]


def _macro_f1(run_dir: Path) -> Optional[tuple[float, float]]:
    path = run_dir / "metrics" / "summary.csv"
    if not path.is_file():
        return None
    import pandas as pd

    table = pd.read_csv(path, index_col=0)
    if "macro_f1" not in table.columns or not {"mean", "std"} <= set(table.index):
        return None
    return float(table.loc["mean", "macro_f1"]), float(table.loc["std", "macro_f1"])


def model_card(run_dir: str | Path, fold_dir: str | Path, config: RunConfig, classes: list[str],
               model_name: str, version: str | int, chosen_by_user: bool = False) -> str:
    """The Markdown model card of one exported fold of a fine-tuning run.

    Args:
        run_dir: The fine-tuning run (``config.yaml``, ``manifest.json``, ``summary.json``, ``fold_K/``).
        fold_dir: The exported fold's directory (its ``metrics.json``).
        config: The run's configuration.
        classes: The class names, in output order.
        model_name: The exported model's name (TF Serving's ``--model_name``).
        version: Its version number.
        chosen_by_user: The fold was named (``--fold``) rather than chosen on validation accuracy.

    Raises:
        FileNotFoundError: the run has no ``summary.json`` (it did not finish) or the fold no
            ``metrics.json``.
    """
    from vacnn_tf import __version__

    run_dir, fold_dir = Path(run_dir), Path(fold_dir)
    for path in (run_dir / "summary.json", fold_dir / "metrics.json"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: the model card needs a finished run.")
    summary = read_json(run_dir / "summary.json")
    fold_metrics = read_json(fold_dir / "metrics.json")
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    synthetic = config.data.data_root is None
    protocol = config.protocol

    lines = [f"# Model card: {model_name} version {version}", "",
             f"Exported by vacnn-tf {__version__} (`vacnn export`) from fold {fold_metrics['fold']} of the "
             f"run `{run_dir.name}`: speech emotion recognition on {CORPUS_TITLES[summary['target']]}, "
             f"{len(classes)} classes ({', '.join(classes)}).", ""]
    if synthetic:
        lines += ["**Synthetic corpus.** This model was trained and tested on the synthetic corpus the package "
                  "generates (no `data.data_root`), not on recorded speech: its numbers say nothing about real "
                  "speech and it is not meant to label any.", ""]
    lines += _model_section(summary, config)
    lines += _data_section(summary, config, manifest.get("data", {}), synthetic, chosen_by_user)
    lines += _metrics_section(summary, fold_metrics, _macro_f1(run_dir),
                             partial=protocol.max_folds is not None or protocol.first_fold > 0)
    lines += _use_and_limits_section(summary, protocol.name, synthetic)
    lines += ["## Citation", "",
              f"The method is the paper's: {PAPER_CITATION}. The implementation is vacnn-tf (MIT licence; "
              "CITATION.cff in its repository).", ""]
    return "\n".join(lines)


def _model_section(summary: Mapping[str, Any], config: RunConfig) -> list[str]:
    variant = summary["variant"]
    bovw = (f"fused with a {config.bovw.k}-word bag of visual words (KAZE descriptors) through Luong attention"
            if summary.get("use_bovw") else "without the bag-of-visual-words branch")
    origin = {"finetuned": "fine-tuned from a network pretrained on TESS + RAVDESS with 7 labels",
              "pure": "trained from random weights on the target corpus alone"}.get(variant, "")
    return ["## Model", "",
            f"- architecture: {summary['architecture']}, {bovw}; variant `{variant}`" + (f": {origin}" if origin else ""),
            f"- inputs: `logmel` float32 [batch, {config.features.image_size}, {config.features.image_size}, 1], the log-mel image with pixel values 0-255"
            + (f"; `bovw` float32 [batch, {config.bovw.k}], its visual-word histogram" if summary.get("use_bovw") else ""),
            "  (the preprocessing is fixed by `feature_config.json` and `vocabulary.npz` beside this card)",
            "- outputs: `probabilities` over the classes of `labels.json`, `label` the most probable one", ""]


def _data_section(summary: Mapping[str, Any], config: RunConfig, data: Mapping[str, Any], synthetic: bool,
                  chosen_by_user: bool) -> list[str]:
    from vacnn_tf.datasets.folds import LEAKAGE_CAVEAT

    target, variant = summary["target"], summary["variant"]
    title = CORPUS_TITLES[target]
    corpus_line = f"- target: {title} ({CORPUS_FACTS[target]['language']}; {CORPUS_FACTS[target]['speech']})"
    if synthetic:
        corpus_line = f"- target: the synthetic corpus in {title}'s layout and classes (generated signals, not speech)"
    if data:
        corpus_line += f"; this run read {data.get('files')} files of {data.get('speakers')} speakers"
    lines = ["## Training data and protocol", "", corpus_line]
    if variant == "finetuned":
        lines.append("- pretraining: " + ("the synthetic corpus in TESS's and RAVDESS's layouts" if synthetic
                                          else "TESS + RAVDESS (English, acted)"))
    protocol = config.protocol
    if protocol.name == "paper":
        lines.append(f"- protocol `paper`: the paper's stratified random {protocol.folds}-fold cross-validation. "
                     + LEAKAGE_CAVEAT)
    else:
        lines.append("- protocol `speaker`: speaker-independent folds (no test speaker is seen in training "
                     "or pretraining)")
    chosen = ("chosen with `--fold`" if chosen_by_user
              else "the fold with the best validation accuracy (never chosen on test accuracy)")
    return lines + [f"- seed {config.seed}, profile `{config.profile}`, at most {config.train.epochs} epochs, the epoch "
                    f"kept chosen on validation {config.train.select_on}; exported: {chosen}", ""]


def _use_and_limits_section(summary: Mapping[str, Any], protocol: str, synthetic: bool) -> list[str]:
    seen = _seen_corpora(summary["target"], summary["variant"])
    languages = sorted({CORPUS_FACTS[c]["language"] for c in seen})
    accs = [f["accuracy"] for f in summary.get("folds", [])]
    lines = ["## Intended use", "",
             "Research and teaching: reproducing the paper, studying cross-corpus speech emotion recognition, "
             "and showing the pipeline from audio to a served model. It labels which of its classes a short "
             "acted utterance sounds like; it does not measure what a person feels.", "",
             "Not for decisions about people (hiring, health, education, policing, surveillance) nor for "
             "monitoring anyone without their consent.", "",
             "## Limits", ""]
    if synthetic:
        lines.append("- Synthetic corpus: trained on generated signals, not speech; the limits below are those of "
                     "the real corpora whose layouts it copies.")
    lines += [f"- Acted speech only: {_and([CORPUS_TITLES[c] for c in seen])} hold actors voicing emotions "
              "on request, recorded in quiet, controlled conditions; spontaneous speech, other microphones and "
              "noise are outside what it has seen.",
              f"- Languages seen: {_and(languages)}. Other languages and accents are untested.",
              "- Few speakers, and only the classes above: anything else is forced onto one of them.",
              "- The spread over folds is part of the result: "
              + (f"fold accuracies here range from {_pct(min(accs))} to {_pct(max(accs))}." if len(accs) > 1
                 else "one fold was run, so there is no spread to judge this number by.")]
    if protocol == "paper":
        lines.append("- The `paper` protocol shares speakers between training and test folds: expect lower "
                     "accuracy on new speakers (train with `--protocol speaker` to measure it).")
    return lines + [""]
