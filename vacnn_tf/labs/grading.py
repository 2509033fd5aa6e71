"""The autograder: import a student's module in isolation, run a lab's checks, report each one.

A check is a function ``check(code, fixtures)`` that returns on success and calls :func:`fail`
with the reason otherwise. It calls the student's code only through :class:`StudentCode`,
which

- imports the module from its file under a unique name (two folders graded in one process
  never share a module, and nothing is left in ``sys.modules``);
- turns whatever the student's code raises into one readable line that points at the
  student's own file and line (``log_mel_image: not implemented (raises
  NotImplementedError)``, ``ValueError: ... (features_lab.py, line 40, in log_mel_image)``),
  never a traceback into the package;
- while the student's code runs, replaces the package functions the lab asks the student to
  write (its ``references``) by stand-ins that refuse to run, so that handing the work back
  to the package is reported instead of graded as correct.

The checks themselves compare behaviour against the package's own implementation (shapes,
values, leakage properties), never the student's source.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import re
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Callable, Iterator, NoReturn, Sequence

_UNIQUE = itertools.count()
_NEWLINES = re.compile(r"\s*\n\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): (.*)$")
# Lines Keras adds around an error raised inside a layer's call.
_DECORATION = ("Exception encountered when calling", "Arguments received by", "•")
# TensorFlow names the graph node that failed, with all its attributes: noise for a student.
_TF_NODE = re.compile(r" for '\{\{node [^}]*\}\}[^']*'")
_MAX_MESSAGE = 300


class CheckFailed(Exception):
    """A check's verdict: the student's work does not do what the check asks (message = why)."""


def fail(message: str) -> NoReturn:
    """End the running check with ``message`` as the reason it failed."""
    raise CheckFailed(message)


class DelegatedToReference(Exception):
    """The student's code called the package function it was asked to write."""

    def __init__(self, reference: str) -> None:
        super().__init__(reference)
        self.reference = reference


class _RefusedMeta(type):
    def __getattr__(cls, name: str) -> Any:  # class attributes of the stand-in (``BovwVocabulary.fit``)
        raise DelegatedToReference(cls.reference)


class _Refused(metaclass=_RefusedMeta):
    """Stands in for a reference function or class: calling, instantiating or subclassing-and-instantiating it raises."""

    reference = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise DelegatedToReference(type(self).reference)


@contextlib.contextmanager
def refusing(references: Sequence[str]) -> Iterator[None]:
    """Replace each ``module.attribute`` in ``references`` by a stand-in that refuses to run."""
    saved = []
    try:
        for dotted in references:
            module_name, attribute = dotted.rsplit(".", 1)
            module = importlib.import_module(module_name)
            saved.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, _RefusedMeta(attribute, (_Refused,), {"reference": dotted}))
        yield
    finally:
        for module, attribute, original in reversed(saved):
            setattr(module, attribute, original)


def one_line(text: Any) -> str:
    """``text`` on one line: a report line per check (the CLI's convention, without importing the CLI)."""
    return _NEWLINES.sub(" ", str(text).strip())


def _qualname(tb: TracebackType) -> str:
    code = tb.tb_frame.f_code
    qualname = getattr(code, "co_qualname", None)  # Python 3.11+
    if qualname:
        return qualname
    owner = tb.tb_frame.f_locals.get("self")
    return f"{type(owner).__name__}.{code.co_name}" if owner is not None else code.co_name


def _original_message(err: BaseException) -> str:
    """The exception's own message, without what libraries wrap around it.

    Keras prefixes an error raised inside a layer's call with a description of the call, and
    TensorFlow's graph errors quote library source lines ("in user code: File ..."); the
    student needs the original line, not the library's frames.
    """
    lines = [_ANSI.sub("", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_DECORATION)]
    if any(line.startswith('File "') or line == "in user code:" for line in lines):
        raised = [m.group(1) for m in map(_RAISED.match, lines) if m]
        lines = raised[-1:] or [line for line in lines if not line.startswith('File "') and line != "in user code:"][-1:]
    text = _TF_NODE.sub("", one_line(" ".join(lines)))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def describe_error(err: BaseException, student_file: Path) -> str:
    """One line for an exception raised while the student's code ran, located in ``student_file``."""
    if isinstance(err, DelegatedToReference):
        return f"calls {err.reference}, the package's version of what this lab asks you to write; write your own"
    mine = []
    tb = err.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == student_file:
            mine.append(tb)
        tb = tb.tb_next
    if isinstance(err, NotImplementedError) and mine:
        return f"{_qualname(mine[-1])}: not implemented (raises NotImplementedError)"
    message = _original_message(err)
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    if mine:
        text += f" ({student_file.name}, line {mine[-1].tb_lineno}, in {_qualname(mine[-1])})"
    return text


class StudentError(Exception):
    """The student's code raised; the message is :func:`describe_error`'s line.

    Attributes:
        original: The exception the student's code raised.
    """

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


class StudentCode:
    """A student's module, imported in isolation, and the guard its calls run under.

    Args:
        path: The student's ``.py`` file.
        references: ``module.attribute`` names of the package code the lab asks the student
            to write; they refuse to run while the student's code does.
    """

    def __init__(self, path: Path, references: Sequence[str] = ()) -> None:
        self.path = path.resolve()
        self.references = tuple(references)
        self.module: ModuleType | None = None
        self.import_error: str | None = None

    def load(self) -> None:
        """Import the module under a name no other module has; an error is kept for every check."""
        name = f"vacnn_lab_student_{next(_UNIQUE)}_{self.path.stem}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            self.import_error = f"{self.path.name} is not a Python module"
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling-free Keras configs look classes up here
        try:
            with self.running():
                spec.loader.exec_module(module)
        except StudentError as err:
            self.import_error = f"{self.path.name} cannot be imported: {err}"
            sys.modules.pop(name, None)
            return
        self.module = module

    def unload(self) -> None:
        if self.module is not None:
            sys.modules.pop(self.module.__name__, None)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Run the student's code: references refused, any exception turned into :class:`StudentError`."""
        try:
            with refusing(self.references):
                yield
        except (CheckFailed, StudentError):
            raise
        except SyntaxError as err:  # at import: the line is the student's
            where = f"{Path(err.filename or self.path).name}, line {err.lineno}"
            raise StudentError(f"SyntaxError: {err.msg} ({where})", err) from None
        except (Exception, SystemExit) as err:  # noqa: BLE001 - anything the student's code raises is reported
            raise StudentError(describe_error(err, self.path), err) from None

    def get(self, name: str) -> Any:
        """The module's attribute ``name``; a check fails when it is missing."""
        if self.module is None or not hasattr(self.module, name):
            fail(f"{self.path.name} defines no {name}")
        return getattr(self.module, name)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the student's function ``name`` under :meth:`running`."""
        function = self.get(name)
        with self.running():
            return function(*args, **kwargs)

    def raises(self, kind: type[BaseException], function: Callable[..., Any], *args: Any,
               **kwargs: Any) -> BaseException | None:
        """The ``kind`` exception calling ``function`` (the student's) raises, None if it raises
        nothing; any other error propagates as a :class:`StudentError` (a NotImplementedError
        still reads "not implemented")."""
        try:
            with self.running():
                function(*args, **kwargs)
        except StudentError as err:
            if isinstance(err.original, kind) and not isinstance(err.original, NotImplementedError):
                return err.original
            raise
        return None


@dataclass(frozen=True)
class Check:
    """One check of a lab: a short name saying what it checks, and the function that does."""

    name: str
    run: Callable[[StudentCode, Any], None]


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool
    reason: str = ""

    def line(self) -> str:
        return f"PASS  {self.name}" if self.passed else f"FAIL  {self.name} -- {self.reason}"


@dataclass
class Grade:
    """The outcome of grading one folder."""

    lab: int
    path: Path
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def complete(self) -> bool:
        return bool(self.results) and self.passed == len(self.results)

    def score(self) -> str:
        return f"score: {self.passed}/{len(self.results)} checks passed"


class Fixtures:
    """Inputs a lab's checks share, made once per grading in a scratch folder (``self.tmp``)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def close(self) -> None:
        """Release what the fixtures hold besides files (a server, say); called after the checks."""


class CheckTimeout(Exception):
    """A check ran past :data:`CHECK_SECONDS`; raised wherever the code was, so the report shows where."""


# Far more than any check needs (a second or two); it only stops an endless loop in the student's code.
CHECK_SECONDS = 120


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`CheckTimeout` after ``seconds``, where an alarm signal can be had (Unix, main thread)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"still running after {seconds} s (an endless loop?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_checks(code: StudentCode, checks: Sequence[Check], fixtures: Any) -> list[Result]:
    """Each check's result; an error in the student's code fails that check only."""
    results = []
    for check in checks:
        if code.import_error is not None:
            results.append(Result(check.name, False, code.import_error))
            continue
        try:
            with time_limit(CHECK_SECONDS):
                check.run(code, fixtures)
        except (CheckFailed, StudentError) as err:
            results.append(Result(check.name, False, str(err)))
        except Exception as err:  # noqa: BLE001 - the student's result broke the check itself
            results.append(Result(check.name, False, f"the result could not be checked ({type(err).__name__}: {one_line(err)})"))
        else:
            results.append(Result(check.name, True))
    return results


def grade(number: int, directory: str | Path) -> Grade:
    """Grade the work of lab ``number`` in ``directory``.

    Raises:
        FileNotFoundError: ``directory`` or the lab's module in it does not exist.
    """
    from vacnn_tf.labs import lab
    from vacnn_tf.labs.checks import lab_checks

    spec = lab(number)
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder; start lab {number} with `vacnn lab start {number} {directory}`.")
    path = directory / spec.module
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} holds no {spec.module}, the file lab {number} grades; start with `vacnn lab start {number} {directory}`."
        )
    checks, references, make_fixtures = lab_checks(number)
    code = StudentCode(path, references)
    code.load()
    try:
        with tempfile.TemporaryDirectory(prefix=f"vacnn-lab{number}-grade-") as tmp:
            fixtures = make_fixtures(Path(tmp))
            try:
                results = run_checks(code, checks, fixtures)
            finally:
                fixtures.close()
    finally:
        code.unload()
    return Grade(number, path, results)
