"""reproduce/paper.py against an independent copy of the paper's tables (tests/data/paper_tables.csv)."""

import csv
from pathlib import Path

from reproduce import paper

FIXTURE = Path(__file__).parent / "data" / "paper_tables.csv"


def _key(row):
    return (int(row["table"]), row["dataset"], row["row"], row["column"])


def test_every_paper_number_matches_the_hand_copy():
    with FIXTURE.open() as fh:
        expected = {_key(r): float(r["value"]) for r in csv.DictReader(fh)}
    ours = {_key({k: str(v) for k, v in r.items()}): float(r["value"]) for r in paper.long_rows()}
    assert set(ours) == set(expected)
    wrong = {k: (ours[k], expected[k]) for k in ours if abs(ours[k] - expected[k]) > 1e-9}
    assert not wrong


def test_confusion_rows_are_near_one():
    for ds, matrix in paper.CONFUSION.items():
        assert len(matrix) == len(paper.CONFUSION_CLASSES[ds])
        for row in matrix:
            assert abs(sum(row) - 1.0) <= 0.06, (ds, row)
