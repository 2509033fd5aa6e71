"""The paper's tables as data: one :class:`TableSpec` a table, all of them in :data:`SPECS`.

A spec says which runs its table needs, how the table is rendered, where the paper's numbers
beside ours are stored (reproduce/paper.py) and in which unit the table's figures are. Adding a
table is adding an entry to :data:`SPECS` and a three-line ``reproduce/tableN.py`` shim;
``python -m reproduce.tableN`` and ``python -m reproduce.all`` read everything else from here.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from reproduce import paper
from reproduce.common import Need, Outcome, main_for, notes_for, summary_of, write_outputs
from reproduce.render import (
    accuracy_notes, accuracy_rows, confusion_rows, first_seed_notes, frame, paper_percent, plot_side_by_side, prf_rows,
)
from vacnn_tf.config import RunConfig

Needs = Callable[[RunConfig], list[Need]]
Render = Callable[[RunConfig, list[Outcome], Path], list[Path]]
Main = Callable[[Optional[list[str]]], int]

# accuracy, UAR, precision, recall and F1 in percent, as the paper prints its accuracies
PERCENT = "percent"
# a row-normalised confusion matrix: each row sums to 1, as the paper prints Tables 7-9
PROPORTION = "proportion"
UNITS = (PERCENT, PROPORTION)


@dataclass(frozen=True)
class TableSpec:
    """One table of the paper: what it needs run, how it is written, what it is compared with.

    Attributes:
        name: ``tableN``: the module ``reproduce.tableN``, the stem of its files (``tableN.csv``,
            ``.md``, ``.png``) and its key in ``results/index.json``.
        title: the heading of ``tableN.md`` and of the table printed in the terminal.
        summary: one line, the ``--help`` description of ``python -m reproduce.tableN``.
        needs: the runs the table reads, for a config.
        renderer: writes the table's files from the runs' outcomes, called with this spec (for its
            name and title); returns the paths written.
        paper: where the paper's numbers are in reproduce/paper.py, e.g. ``TABLE_PRF["ravdess"]``.
        units: ``percent`` (accuracy, UAR, precision, recall, F1; the paper_* columns alike) or
            ``proportion`` (a row-normalised confusion matrix).
    """

    name: str
    title: str
    summary: str
    needs: Needs
    renderer: Callable[[TableSpec, RunConfig, list[Outcome], Path], list[Path]]
    paper: tuple[str, ...]
    units: str = PERCENT

    def __post_init__(self) -> None:
        if not re.fullmatch(r"table\d+", self.name):
            raise ValueError(f"a table's name is 'table' and its number in the paper. Received: name={self.name!r}")
        if self.units not in UNITS:
            raise ValueError(f"{self.name}: units is one of {', '.join(UNITS)}. Received: units={self.units!r}")

    def render(self, config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
        return self.renderer(self, config, outcomes, out)

    def main(self, argv: Optional[list[str]] = None) -> int:
        return main_for(self.name, self.summary, self.needs, self.render, argv)


def shim(name: str, module: str) -> tuple[Needs, Render, Main]:
    """``needs``, ``render`` and ``main`` of the module ``reproduce.<name>`` (its ``__name__``).

    ``main`` looks the module's ``needs`` and ``render`` up when called rather than binding the
    spec's, so that a caller who replaces one on the module (a test running Table 3 on a linear
    row) is obeyed, as when each module defined its own.
    """
    spec = SPECS[name]

    def main(argv: Optional[list[str]] = None) -> int:
        table = sys.modules[module]
        return main_for(spec.name, spec.summary, table.needs, table.render, argv)

    return spec.needs, spec.render, main


# --- Table 2: the pretraining -----------------------------------------------------------------

# whatever --protocol says: the pretraining is scored on a random stratified hold-out (folds.holdout_split)
PRETRAIN_HOLDOUT = "random hold-out"


def pretraining_needs(config: RunConfig) -> list[Need]:
    return [Need("vacnn", "pretrain", "pretrain", {"model.architecture": "vacnn"})]


def render_pretraining(spec: TableSpec, config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    """Per-class P/R/F1 on the pretraining hold-out, and its overall accuracy as a last row."""
    outcome = outcomes[0]
    rows = prf_rows("tess+ravdess", outcome, paper.TABLE2_PRF, config, protocol=PRETRAIN_HOLDOUT)
    acc = summary_of(outcome.run_dir)["accuracy"] if outcome.ok else float("nan")
    rows.append({"dataset": "tess+ravdess", "class": "overall accuracy (%)", "precision": acc,
                 "paper_precision": paper.TABLE2_ACCURACY, "delta_precision": acc - paper.TABLE2_ACCURACY,
                 "protocol": PRETRAIN_HOLDOUT, "profile": config.profile, "status": outcome.status})
    notes = notes_for(config, outcomes, protocol=PRETRAIN_HOLDOUT) + first_seed_notes(outcomes) + [
        "Pretraining is evaluated on a stratified random hold-out of TESS + RAVDESS (1/folds of the data), "
        "never trained on, under either --protocol: its speakers also speak in the training part, as in the "
        "paper's Table 2, so it is not a speaker-independent figure. Precision, recall and F1 in percent; the "
        "last row holds the overall accuracy in percent in the precision columns."]
    return list(write_outputs(out, spec.name, frame(rows), spec.title, notes))


# --- Table 3: the VACNN + BOVW variants ---------------------------------------------------------

# Each row pins the model it is labelled with: a --set given for the whole table cannot relabel it.
VACNN_BOVW = {"model.architecture": "vacnn", "model.use_bovw": True}

VARIANTS = {
    "pure": ("pure", VACNN_BOVW),
    "finetuned": ("finetuned", VACNN_BOVW),
    "cbam": ("finetuned", {"model.architecture": "vacnn-cbam", "model.use_bovw": True}),
}


def variant_needs(config: RunConfig) -> list[Need]:
    return [Need(key, target, variant, overrides)
            for target in paper.TARGETS for key, (variant, overrides) in VARIANTS.items()]


def render_variants(spec: TableSpec, config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    rows = [row for o in outcomes
            for row in accuracy_rows(o.need.target, o.need.key, o,
                                     paper_percent(paper.TABLE3_ACCURACY[o.need.target][o.need.key]),
                                     config, paper.TABLE3_VARIANTS[o.need.key])]
    notes = notes_for(config, outcomes) + accuracy_notes(config, outcomes)
    return list(write_outputs(out, spec.name, frame(rows), spec.title, notes))


# --- Tables 4-9: the fine-tuned VACNN + BOVW on one target --------------------------------------

def finetuned_vacnn_bovw(dataset: str, config: RunConfig) -> list[Need]:
    return [Need("vacnn_bovw", dataset, "finetuned", VACNN_BOVW)]


def render_per_class(dataset: str, spec: TableSpec, config: RunConfig, outcomes: list[Outcome],
                     out: Path) -> list[Path]:
    rows = prf_rows(dataset, outcomes[0], paper.TABLE_PRF[dataset], config)
    notes = notes_for(config, outcomes) + first_seed_notes(outcomes) + [
        "Per-class precision, recall and F1 in percent, pooled over the test folds; 'average' is the macro average."]
    return list(write_outputs(out, spec.name, frame(rows), spec.title, notes))


def render_confusion(dataset: str, spec: TableSpec, config: RunConfig, outcomes: list[Outcome],
                     out: Path) -> list[Path]:
    rows, mine = confusion_rows(dataset, outcomes[0], config)
    notes = notes_for(config, outcomes) + first_seed_notes(outcomes) + [
        "Rows: true class; columns: predicted; pooled over the test folds and normalised per row."]
    files = list(write_outputs(out, spec.name, frame(rows), spec.title, notes))
    files.append(plot_side_by_side(dataset, mine, out / f"{spec.name}.png", f"{config.profile} profile"))
    return files


def per_class_spec(number: int, dataset: str) -> TableSpec:
    """Tables 4-6: per-class precision/recall/F1 of the fine-tuned VACNN + BOVW on ``dataset``."""
    return TableSpec(
        name=f"table{number}", title=f"Table {number}: fine-tuned VACNN + BOVW on {dataset}, per class",
        summary=f"Table {number}: per-class precision/recall/F1 of the fine-tuned VACNN + BOVW on {dataset}.",
        needs=functools.partial(finetuned_vacnn_bovw, dataset), renderer=functools.partial(render_per_class, dataset),
        paper=(f'TABLE_PRF["{dataset}"]',))


def confusion_spec(number: int, dataset: str) -> TableSpec:
    """Tables 7-9: the row-normalised confusion matrix of the fine-tuned VACNN + BOVW on ``dataset``."""
    return TableSpec(
        name=f"table{number}", title=f"Table {number}: confusion matrix on {dataset}",
        summary=f"Table {number}: row-normalised confusion matrix of the fine-tuned VACNN + BOVW on {dataset}.",
        needs=functools.partial(finetuned_vacnn_bovw, dataset), renderer=functools.partial(render_confusion, dataset),
        paper=(f'CONFUSION["{dataset}"]',), units=PROPORTION)


# --- Table 10: the methods compared -------------------------------------------------------------

METHODS = {
    "inception": {"model.architecture": "inception", "model.use_bovw": False},
    "mobilenet": {"model.architecture": "mobilenet", "model.use_bovw": False},
    "resnet": {"model.architecture": "resnet", "model.use_bovw": False},
    "vacnn": {"model.architecture": "vacnn", "model.use_bovw": False},
    "vacnn_bovw": VACNN_BOVW,
}

# Ours, not the paper's: logistic regression on per-mel-band statistics plus the BOVW histogram,
# on the same folds (vacnn_tf.models.linear). It says how hard a corpus is and what a network must beat.
LINEAR = "linear"
LINEAR_LABEL = "linear reference (ours: band statistics + BOVW)"


def method_needs(config: RunConfig) -> list[Need]:
    return [Need(LINEAR, target, "linear", {}) for target in paper.TARGETS] + [
        Need(method, target, "finetuned", overrides) for target in paper.TARGETS for method, overrides in METHODS.items()]


def _cited_rows(target: str) -> list[dict[str, object]]:
    return [{"dataset": target, "method": cited, "label": f"{cited} ({features})",
             "accuracy": np.nan, "uar": np.nan, "accuracy_std": np.nan, "uar_std": np.nan,
             "paper_accuracy": acc, "delta": np.nan, "protocol": "their own",
             "profile": "", "status": "cited from the paper, not rerun"}
            for cited, features, acc in paper.TABLE10_LITERATURE[target]]


def render_methods(spec: TableSpec, config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    """Per target: the literature's rows as cited, then every run of ours in the order of the needs."""
    rows = []
    for target in paper.TARGETS:
        rows += _cited_rows(target)
        for o in outcomes:
            if o.need.target != target:
                continue
            if o.need.key == LINEAR:
                rows += accuracy_rows(target, LINEAR, o, np.nan, config, LINEAR_LABEL)
            else:
                rows += accuracy_rows(target, o.need.key, o, paper.TABLE10_ACCURACY[target][o.need.key],
                                      config, paper.TABLE10_METHODS[o.need.key])
    notes = notes_for(config, outcomes) + accuracy_notes(config, outcomes) + [
        "Literature rows are cited from the paper (other authors, other protocols) and were not rerun."]
    return list(write_outputs(out, spec.name, frame(rows), spec.title, notes))


# --- the registry -------------------------------------------------------------------------------

def _registry(specs: Sequence[TableSpec]) -> dict[str, TableSpec]:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"each table once in the registry. Received: {names}")
    return {s.name: s for s in specs}


SPECS: dict[str, TableSpec] = _registry([
    TableSpec(name="table2", title="Table 2: pretraining on TESS + RAVDESS (VACNN)",
              summary="Table 2: VACNN pretraining on TESS + RAVDESS, per-class precision/recall/F1 and accuracy.",
              needs=pretraining_needs, renderer=render_pretraining, paper=("TABLE2_PRF", "TABLE2_ACCURACY")),
    TableSpec(name="table3", title="Table 3: VACNN + BOVW variants",
              summary="Table 3: overall accuracy of pure, fine-tuned and fine-tuned (CBAM) VACNN + BOVW "
                      "on RAVDESS, EmoDB and SAVEE.",
              needs=variant_needs, renderer=render_variants, paper=("TABLE3_ACCURACY",)),
    per_class_spec(4, "ravdess"),
    per_class_spec(5, "emodb"),
    per_class_spec(6, "savee"),
    confusion_spec(7, "ravdess"),
    confusion_spec(8, "emodb"),
    confusion_spec(9, "savee"),
    TableSpec(name="table10", title="Table 10: methods compared",
              summary="Table 10: overall accuracy of Inception v3, MobileNet, ResNet, VACNN and VACNN + BOVW "
                      "fine-tuned on RAVDESS, EmoDB and SAVEE, beside the literature the paper cites.",
              needs=method_needs, renderer=render_methods, paper=("TABLE10_ACCURACY", "TABLE10_LITERATURE")),
])
