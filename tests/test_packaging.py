"""Packaging: the dependency lists agree, resolve per platform, and match the pinned versions."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

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


def test_constraints_pin_versions_the_requirements_allow():
    pins = {}
    for line in _lines((ROOT / "constraints.txt").read_text()):
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = version
    for platform in ("linux-x86_64", "macos-arm64"):
        for name, requirement in resolved(install_requires(), platform).items():
            assert name in pins, f"constraints.txt does not pin {name}"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside {requirement}")
    assert "vacnn-tf" not in pins
