"""One convention for every command: descriptions, --version, one-line errors, exit codes, quiet start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vacnn_tf import __version__
from vacnn_tf.cli import build_parser, leaf_parsers, main
from vacnn_tf.cli.errors import CommandFailed, run_command


def _one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{captured.err}"
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    return lines[0]


def test_every_command_has_a_description():
    missing = [leaf.prog for leaf in leaf_parsers(build_parser()) if not leaf.description]
    assert not missing, f"no description: {missing}"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"vacnn {__version__}"


USER_ERRORS = [
    (["model-summary", "--set", "model.foo=1"], "vacnn model-summary", "Unknown config key(s) ['model.foo']"),
    (["finetune", "--target", "emodb", "--set", "model.dense_unit=3"], "vacnn finetune", "Did you mean model.dense_units?"),
    (["pretrain", "--set", "trian.epochs=1"], "vacnn pretrain", "Did you mean train?"),
    (["pretrain", "--config", "configs/dmeo.yaml"], "vacnn pretrain", "did you mean configs/demo.yaml?"),
    (["bench", "--quick", "--set", "train.precision=float8"], "vacnn bench", "train.precision"),
    (["finetune", "--target", "nowhere"], "vacnn finetune", "invalid choice: 'nowhere'"),
    (["finetune", "--target", "emodb", "--protocol", "paper", "--set", "protocol.name=speaker"], "vacnn finetune",
     "--protocol and --set protocol.name=speaker disagree"),
    (["finetune"], "vacnn finetune", "the following arguments are required: --target"),
    (["evaluate", "--run", "{tmp}/none"], "vacnn evaluate", "is not a run directory"),
    (["export", "--run", "{tmp}", "--out", "{tmp}/models"], "vacnn export", "config.yaml missing"),
    (["predict", "--model", "{tmp}", "a.wav"], "vacnn predict", "is not a SavedModel"),
    (["corpus-stats", "--corpus", "tess", "--root", "{tmp}/none"], "vacnn corpus-stats", "not found"),
    (["figures", "curves", "--run", "{tmp}"], "vacnn figures curves", "history.csv"),
]


@pytest.mark.parametrize("argv, command, message", USER_ERRORS, ids=[" ".join(a[:2]) for a, _, _ in USER_ERRORS])
def test_user_errors_are_one_line_and_exit_2(argv, command, message, tmp_path: Path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert message in _one_error_line(capsys, command)


def test_a_failure_while_running_exits_1(tmp_path: Path, capsys):
    assert main(["corpus-stats", "--corpus", "tess", "--root", str(tmp_path)]) == 1
    assert "no TESS files found" in _one_error_line(capsys, "vacnn corpus-stats")


def test_debug_shows_the_traceback(capsys):
    assert main(["model-summary", "--set", "model.foo=1", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("vacnn model-summary: error: Unknown config key")


def test_global_options_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--debug", "evaluate", "--run", "r"]).debug is True
    assert parser.parse_args(["evaluate", "--run", "r", "--debug"]).debug is True
    assert parser.parse_args(["evaluate", "--run", "r"]).debug is False
    assert parser.parse_args(["export", "--run", "r", "--out", "m", "--version", "3"]).version == 3


def _raise(err: BaseException):
    def func(args):
        raise err
    return func


@pytest.mark.parametrize("err, code", [
    (CommandFailed("nothing to do"), 1),
    (OSError(28, "No space left on device"), 1),
    (RuntimeError("something broke"), 1),
    (ValueError("bad value. Received: x=1"), 2),
    (FileNotFoundError("missing.wav"), 2),
])
def test_exit_codes(err, code, capsys):
    assert run_command(_raise(err), None, "vacnn test") == code
    line = _one_error_line(capsys, "vacnn test")
    if isinstance(err, RuntimeError):  # unexpected: named, with the way to see more
        assert "RuntimeError: something broke" in line and "--debug" in line


@pytest.mark.parametrize("argv, message", [
    (["--set", "train.foo=1"], "Unknown config key(s) ['train.foo']"),
    (["--data-root", "{tmp}/no-such-folder"], "the folder does not exist"),
    (["--profile", "demo", "--data-root", "{tmp}"], "--profile demo runs on the synthetic corpus"),
])
def test_reproduce_user_errors_are_one_line_and_exit_2(argv, message, tmp_path: Path, capsys):
    from reproduce import table10

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        table10.main([*argv, "--out", str(tmp_path / "results")])
    assert exit_.value.code == 2
    assert message in _one_error_line(capsys, "python -m reproduce.table10")
    assert not (tmp_path / "results").exists()


def test_tensorflow_start_up_logging_is_off(tmp_path: Path):
    """In a fresh process (TensorFlow logs at import): only the command's own line reaches stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "vacnn_tf", "predict", "--model", str(tmp_path), "a.wav"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("vacnn predict: error: ")
