"""The labs as assignments: the autograder passes every instructor solution, fails every
untouched starter with a readable reason per check, tests behaviour (a wrong solution fails
the check it breaks, with a reason naming the slip), and the starters are generated from the
solutions. (The handouts' assignment sections and the notebooks: tests/test_labs.py.)

Grading runs in this process on tiny inputs: seconds per lab (lab 4 exports a tiny model).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vacnn_tf.cli import main
from vacnn_tf.labs import LABS, solutions_dir
import vacnn_tf.labs
from vacnn_tf.labs.checks import lab_checks
from vacnn_tf.labs.starters import expected_starters, starter_source

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = sorted(LABS)


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _check_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]


def _grade_mutant(capsys, tmp_path: Path, number: int, old: str, new: str) -> list[str]:
    """Grade lab ``number``'s solution with ``old`` replaced by ``new``; the FAIL lines."""
    module = LABS[number].module
    text = (solutions_dir(number) / module).read_text()
    assert old in text, f"the solution of lab {number} no longer contains {old!r}"
    (tmp_path / module).write_text(text.replace(old, new, 1))
    code, out, _ = _run(capsys, "lab", "grade", str(number), str(tmp_path))
    assert code == 1, out
    return [line for line in _check_lines(out) if line.startswith("FAIL")]


@pytest.mark.parametrize("number", NUMBERS)
def test_the_solutions_pass(number: int, capsys):
    code, out, err = _run(capsys, "lab", "grade", str(number), "--solutions")
    lines = _check_lines(out)
    assert code == 0, out + err
    assert lines and all(line.startswith("PASS") for line in lines), out
    assert out.rstrip().endswith(f"score: {len(lines)}/{len(lines)} checks passed")


@pytest.mark.parametrize("number", NUMBERS)
def test_the_untouched_starter_fails_with_readable_reasons(number: int, tmp_path: Path, capsys):
    folder = tmp_path / "work"
    code, out, _ = _run(capsys, "lab", "start", str(number), str(folder))
    assert code == 0 and (folder / LABS[number].module).is_file(), out
    code, out, err = _run(capsys, "lab", "grade", str(number), str(folder))
    lines = _check_lines(out)
    assert code == 1
    assert lines and all(line.startswith("FAIL") for line in lines), out
    for line in lines:
        assert "not implemented (raises NotImplementedError)" in line, line
    assert "Traceback" not in out + err and "vacnn_tf/" not in out + err
    assert err.splitlines() == [f"vacnn lab grade: error: {len(lines)} of {len(lines)} checks failed (the FAIL lines say why)"]


MUTANTS = [
    (1, "    pixels = pixels[::-1]\n", "", "upside down"),
    (1, "counts /= counts.sum()", "pass", "normalization='l1' differs"),
    (2, "return inputs * (self.channel.attention(inputs) + self.spatial.attention(inputs))",
     "return self.spatial(self.channel(inputs))", "that is CBAM"),
    (2, "hidden = ops.relu(ops.matmul(x, self.hidden_kernel) + self.hidden_bias)",
     "hidden = ops.matmul(x, self.hidden_kernel) + self.hidden_bias", "the hidden ReLU is missing"),
    (3, 'if protocol == "speaker" and target in PRETRAIN_CORPORA:', 'if protocol == "paper":',
     "already heard them with their labels"),
    (3, '"train": np.flatnonzero(~in_test & ~in_val),', '"train": np.flatnonzero(~in_test),', "in both train and val"),
    (4, 'endpoint = f"{url.rstrip(\'/\')}/v1/models/{model_name}:predict"',
     'endpoint = f"{url.rstrip(\'/\')}/v1/models/vacnn:predict"', "posted to /v1/models/vacnn:predict"),
    (4, '            if want is not None and size != want:\n', '            if False:\n', "found nothing wrong with bovw of 16"),
]


@pytest.mark.parametrize("number, old, new, reason", MUTANTS, ids=[f"lab{m[0]}-{m[3][:24]}" for m in MUTANTS])
def test_a_wrong_solution_fails_the_check_it_breaks(number: int, old: str, new: str, reason: str, tmp_path: Path, capsys):
    fails = _grade_mutant(capsys, tmp_path, number, old, new)
    assert any(reason in line for line in fails), fails
    assert len(fails) < len(lab_checks(number)[0])  # the other checks still pass


def test_calling_the_package_instead_is_reported(tmp_path: Path, capsys):
    fails = _grade_mutant(capsys, tmp_path, 1, "    ### BEGIN SOLUTION\n    import cv2\n",
                          "    from vacnn_tf.config import FeatureConfig\n    from vacnn_tf.features.logmel import logmel_image\n"
                          "    return logmel_image(waveform, sample_rate, FeatureConfig(sample_rate=sample_rate))\n"
                          "    ### BEGIN SOLUTION\n    import cv2\n")
    assert fails and all("calls vacnn_tf.features.logmel.logmel_image" in line for line in fails if "log_mel_image" in line)
    import vacnn_tf.features.logmel

    assert vacnn_tf.features.logmel.logmel_image.__module__ == "vacnn_tf.features.logmel"  # put back after grading


def test_errors_in_the_students_code_point_at_its_line(tmp_path: Path, capsys):
    fails = _grade_mutant(capsys, tmp_path, 1, "k = len(centres)", "k = len(centres) // 0")
    assert fails and all("ZeroDivisionError" in line and "features_lab.py, line" in line for line in fails)
    fails = _grade_mutant(capsys, tmp_path, 3, "rng = np.random.default_rng(seed)", "rng = (")
    assert fails and all("cannot be imported: SyntaxError" in line for line in fails)
    assert not [name for name in sys.modules if name.startswith("vacnn_lab_student_")]


def test_start_refuses_a_folder_that_is_not_empty(tmp_path: Path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = _run(capsys, "lab", "start", "3", str(tmp_path))
    assert code == 2 and err.startswith("vacnn lab start: error: ") and "--force" in err and len(err.splitlines()) == 1
    (tmp_path / "folds_lab.py").write_text("edited")
    code, out, _ = _run(capsys, "lab", "start", "3", str(tmp_path), "--force")
    assert code == 0 and "vacnn lab grade 3" in out
    assert (tmp_path / "folds_lab.py").read_text() != "edited" and (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv, message", [
    (["lab", "grade", "1", "{tmp}"], "holds no features_lab.py"),
    (["lab", "grade", "1", "{tmp}/none"], "is not a folder"),
    (["lab", "grade", "1"], "one of the arguments DIR --solutions is required"),
    (["lab", "start", "5", "{tmp}"], "invalid choice: 5"),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path, capsys):
    code, _, err = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_solutions_are_refused_without_the_instructor_folder(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setattr(vacnn_tf.labs, "checkout_root", lambda: tmp_path)  # as from an installed wheel
    code, _, err = _run(capsys, "lab", "grade", "2", "--solutions")
    assert code == 2 and "not part of the installed package" in err and len(err.splitlines()) == 1


def test_starters_are_generated_from_the_solutions():
    for path, text in expected_starters().items():
        assert path.is_file() and path.read_text() == text, f"{path} is stale: python -m vacnn_tf.labs.starters"
    for number, spec in LABS.items():
        starter = (ROOT / "vacnn_tf" / "labs" / "starter" / f"lab{number}" / spec.module).read_text()
        assert "BEGIN SOLUTION" not in starter and "INSTRUCTOR" not in starter and "raise NotImplementedError" in starter


def test_starter_markers():
    solution = "def f():\n    ### TODO: add\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert starter_source(solution) == "def f():\n    # TODO: add\n    raise NotImplementedError\n"
    with pytest.raises(ValueError, match="without"):
        starter_source("    ### BEGIN SOLUTION\n    return 1\n")


def test_an_endless_loop_fails_its_check_and_says_where(monkeypatch, tmp_path: Path):
    import vacnn_tf.labs.grading as grading

    text = (solutions_dir(3) / "folds_lab.py").read_text()
    old = '    if protocol == "speaker" and target in PRETRAIN_CORPORA:\n'
    assert old in text
    (tmp_path / "folds_lab.py").write_text(text.replace(old, "    while True:\n        pass\n" + old))
    monkeypatch.setattr(grading, "CHECK_SECONDS", 1)
    stuck = [r for r in grading.grade(3, tmp_path).results if not r.passed]
    assert stuck and all("still running after 1 s" in r.reason and "in pretrain_exclusions" in r.reason for r in stuck)
