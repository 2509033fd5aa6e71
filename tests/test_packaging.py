"""Packaging: the dependency lists agree, resolve per platform, and match the pinned versions."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# the stage folders of vacnn_tf (docs/architecture.md), each a package the wheel must carry
STAGES = ("corpora", "features", "datasets", "models", "evaluation", "training", "serving")

# Marker variables as each platform's CPython reports them (platform.machine(), sys.platform).
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
    "macos-x86_64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64", "os_name": "posix"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
}
# Platforms each TensorFlow distribution publishes wheels for on PyPI (tensorflow-cpu has no
# macOS arm64 or Linux aarch64 wheel; Intel Macs stop at 2.16, both names).
TF_WHEELS = {
    "tensorflow-cpu": {"linux-x86_64", "windows-amd64", "macos-x86_64"},
    "tensorflow": {"linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64", "windows-amd64"},
}
EXPECTED_TF = {
    "linux-x86_64": "tensorflow-cpu",
    "windows-amd64": "tensorflow-cpu",
    "linux-aarch64": "tensorflow",
    "macos-arm64": "tensorflow",
    "macos-x86_64": "tensorflow",
}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def requirements_txt() -> list[Requirement]:
    return [Requirement(line) for line in _lines((ROOT / "requirements.txt").read_text())]


def install_requires() -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return [Requirement(line) for line in _lines(parser["options"]["install_requires"])]


def resolved(requirements: list[Requirement], platform: str) -> dict[str, Requirement]:
    """The requirements whose markers hold on ``platform``, by canonical name."""
    env = {**default_environment(), **PLATFORMS[platform]}
    return {canonicalize_name(r.name): r for r in requirements if r.marker is None or r.marker.evaluate(env)}


def test_requirements_txt_and_setup_cfg_agree():
    assert [str(r) for r in requirements_txt()] == [str(r) for r in install_requires()]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_each_platform_gets_one_tensorflow_with_wheels(platform: str):
    chosen = [name for name in resolved(install_requires(), platform) if name in TF_WHEELS]
    assert chosen == [EXPECTED_TF[platform]], f"{platform}: resolves to {chosen}"
    assert platform in TF_WHEELS[chosen[0]], f"{chosen[0]} has no wheel for {platform}"


def test_api_dependencies_have_an_upper_bound():
    unbounded = [str(r) for r in install_requires() if not any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)]
    assert not unbounded, f"no upper bound: {unbounded}"


def _pins() -> dict[str, str]:
    pins = {}
    for line in _lines((ROOT / "constraints.txt").read_text()):
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_versions_the_requirements_allow():
    pins = _pins()
    for platform in ("linux-x86_64", "macos-arm64"):
        for name, requirement in resolved(install_requires(), platform).items():
            assert name in pins, f"constraints.txt does not pin {name}"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside {requirement}")
    assert "vacnn-tf" not in pins


# what pip freeze leaves out of an environment, and so out of constraints.txt
UNFROZEN = {"pip", "setuptools", "wheel"}


def test_constraints_pin_the_test_extra_within_its_ranges():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    extra = [Requirement(line) for line in _lines(parser["options.extras_require"]["test"])]
    pins = _pins()
    for requirement in extra:
        name = canonicalize_name(requirement.name)
        if name in UNFROZEN:
            continue
        assert name in pins, f"constraints.txt does not pin {name} (the test extra)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement}")
    assert pins["jax"] == pins["jaxlib"], "jax and jaxlib are released together; pin one version of both"


# What a wheel is built from: the files setup.cfg and pyproject.toml read.
WHEEL_SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "LICENSE", "vacnn_tf", "reproduce")


def _run(argv: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_installs_outside_the_checkout_with_its_configs(tmp_path: Path):
    """Build a wheel from a copy of the sources, install it alone into a fresh virtual
    environment outside the checkout (the dependencies come from this environment through a
    .pth file: no network), and, from another folder, load the demo profile as
    ``python -m reproduce.table10`` does, run ``vacnn --help``, and start and grade a lab
    (its starter ships in the wheel, the instructor's solutions do not)."""
    source = tmp_path / "src"  # a copy: an in-tree build would leave build/ in the checkout
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("vacnn_tf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "vacnn_tf/configs/demo.yaml" in names and "vacnn_tf/configs/labs/lab.yaml" in names
    assert "reproduce/table10.py" in names
    assert {f"vacnn_tf/{stage}/__init__.py" for stage in STAGES} <= set(names), "a stage folder is missing from the wheel"
    assert "vacnn_tf/labs/starter/lab1/features_lab.py" in names and "vacnn_tf/labs/checks/lab4.py" in names
    assert not [n for n in names if n.startswith("instructor/") or "/solutions/" in n], "the lab solutions are in the wheel"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], tmp_path)
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    # A plain path line: this environment's .pth files (the editable install of the checkout) stay unread.
    (Path(site) / "dependencies.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import vacnn_tf, reproduce.table10\n"
        "from reproduce.common import make_config, parser\n"
        "from vacnn_tf.config import load_config\n"
        "config = make_config(parser('').parse_args([]))\n"
        "assert load_config('configs/labs/lab.yaml').bovw.k == 32\n"
        "print(vacnn_tf.__file__)\n"
        "print(config.profile, config.train.epochs, config.protocol.max_folds)\n"
    )
    out = _run([str(python), "-c", script], elsewhere).stdout.split("\n")
    assert Path(out[0]).is_relative_to(venv), f"vacnn_tf imported from {out[0]}, not from the wheel"
    from reproduce.common import make_config, parser

    # The same profile as the checkout's: the wheel ships the demo YAML, not a default.
    expected = make_config(parser("").parse_args([]))
    assert out[1] == f"demo {expected.train.epochs} {expected.protocol.max_folds}"
    scripts = python.parent
    help_text = _run([str(scripts / "vacnn"), "--help"], elsewhere).stdout
    assert help_text.startswith("usage: vacnn") and "finetune" in help_text
    from vacnn_tf import __version__

    assert _run([str(scripts / "vacnn"), "--version"], elsewhere).stdout.strip() == f"vacnn {__version__}"

    # The labs from the wheel: the starter is package data, the grader runs, the solutions are not there.
    started = _run([str(scripts / "vacnn"), "lab", "start", "1", "lab1"], elsewhere).stdout
    assert (elsewhere / "lab1" / "features_lab.py").is_file(), started
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    for argv, code, expected in ((["lab1"], 1, "score: 0/"), (["--solutions"], 2, "not part of the installed package")):
        graded = subprocess.run([str(scripts / "vacnn"), "lab", "grade", "1", *argv], cwd=elsewhere, env=env,
                                capture_output=True, text=True, timeout=120)
        assert graded.returncode == code and expected in graded.stdout + graded.stderr, graded.stdout + graded.stderr


def test_the_paper_is_cited_alike_everywhere():
    import yaml

    from vacnn_tf.evaluation.model_card import PAPER_CITATION, PAPER_DOI

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    paper = cff["preferred-citation"]
    assert paper["doi"] == PAPER_DOI and paper["title"] in PAPER_CITATION and str(paper["year"]) in PAPER_CITATION
    assert cff["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()
    for doc in ("README.md", "docs/index.md"):
        text = " ".join((ROOT / doc).read_text().split())
        assert paper["title"] in text and f"doi.org/{PAPER_DOI}" in text, f"{doc} does not cite the paper"
