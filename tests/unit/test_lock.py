"""pyproject.toml and the lock files agree, and every install path goes through a lock.

pyproject.toml says what Storyloop accepts (a range per dependency, each with a major bound);
requirements/dev.lock and requirements/app.lock say what is installed (`bash .ci/lock` writes
them). If someone edits one and not the other, pip's --require-hashes would install a set that
no longer matches pyproject (or refuse to), so these checks fail first, with the package named.
Each check is a plain function over the files' text; the `test_*_catches_*` cases feed it a
broken copy to show it would fail.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
APP_LOCK = ROOT / "requirements" / "app.lock"
DEV_LOCK = ROOT / "requirements" / "dev.lock"
BUILD_IN = ROOT / "requirements" / "build.in"

_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    """One locked package: its exact version and how many file hashes guard it."""

    version: Version
    hashes: int


def parse_lock(text: str) -> dict[str, Pin]:
    """Every requirement of a pip requirements file, which must be `name==version` with hashes."""
    pins: dict[str, Pin] = {}
    for entry in text.replace("\\\n", " ").splitlines():
        line = entry.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = re.split(r"\s+(?=--)", line)
        requirement = Requirement(spec)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{spec!r} is not pinned with ==")
        hashes = sum(1 for option in options if _HASH.fullmatch(option.strip()))
        pins[canonicalize_name(requirement.name)] = Pin(Version(specifiers[0].version), hashes)
    return pins


def requirements(pyproject: str, *, dev: bool) -> list[Requirement]:
    """The runtime dependencies (and the dev extras) of a pyproject.toml."""
    project = tomllib.loads(pyproject)["project"]
    found = [Requirement(item) for item in project["dependencies"]]
    if dev:
        found += [Requirement(item) for item in project["optional-dependencies"]["dev"]]
    return found


def build_requirements(build_in: str) -> list[Requirement]:
    """The install tools every lock carries too (pip, setuptools): requirements/build.in."""
    lines = (line.split("#", 1)[0].strip() for line in build_in.splitlines())
    return [Requirement(line) for line in lines if line]


def missing_from_lock(wanted: list[Requirement], lock: dict[str, Pin]) -> list[str]:
    """Each wanted requirement that the lock lacks, pins outside its range, or leaves unhashed."""
    problems = []
    for requirement in wanted:
        pin = lock.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement.name}: {pin.version} is outside {requirement.specifier}")
        elif pin.hashes == 0:
            problems.append(f"{requirement.name}: no --hash")
    return problems


def unbounded(wanted: list[Requirement], lock: dict[str, Pin]) -> list[str]:
    """Each requirement without an upper bound that stops at the next major after its pin.

    `<4` for a pinned 3.x passes, `<0.18` for a 0.17 tool too; no `<` at all, or one past the
    next major (`<100`), is reported.
    """
    problems = []
    for requirement in wanted:
        uppers = [Version(s.version) for s in requirement.specifier if s.operator == "<"]
        pin = lock.get(canonicalize_name(requirement.name))
        if not uppers:
            problems.append(f"{requirement.name}: no major bound (<N)")
        elif pin is not None and min(uppers) > Version(str(pin.version.major + 1)):
            problems.append(f"{requirement.name}: bound <{min(uppers)} lets a new major in")
    return problems


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def all_requirements() -> list[Requirement]:
    return requirements(read(PYPROJECT), dev=True) + build_requirements(read(BUILD_IN))


@pytest.mark.parametrize(
    ("lock_path", "dev"), [(APP_LOCK, False), (DEV_LOCK, True)], ids=["app", "dev"]
)
def test_each_lock_pins_every_pyproject_dependency_in_range_with_hashes(
    lock_path: Path, dev: bool
) -> None:
    lock = parse_lock(read(lock_path))  # raises on any entry not pinned with ==
    wanted = requirements(read(PYPROJECT), dev=dev) + build_requirements(read(BUILD_IN))
    assert missing_from_lock(wanted, lock) == []
    assert [name for name, pin in lock.items() if pin.hashes == 0] == []
    if not dev:  # the image must not carry the test tools
        extras = tomllib.loads(read(PYPROJECT))["project"]["optional-dependencies"]["dev"]
        assert {canonicalize_name(Requirement(item).name) for item in extras} & lock.keys() == set()


def test_every_dependency_has_a_major_bound() -> None:
    build = tomllib.loads(read(PYPROJECT))["build-system"]["requires"]
    wanted = all_requirements() + [Requirement(item) for item in build]
    assert unbounded(wanted, parse_lock(read(DEV_LOCK))) == []


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    app, dev = parse_lock(read(APP_LOCK)), parse_lock(read(DEV_LOCK))
    assert {name: pin.version for name, pin in app.items() if dev.get(name) != pin} == {}


def test_build_in_locks_the_build_backend_pyproject_names() -> None:
    requires = tomllib.loads(read(PYPROJECT))["build-system"]["requires"]
    build = [Requirement(item) for item in requires]
    locked = {canonicalize_name(r.name): r.specifier for r in build_requirements(read(BUILD_IN))}
    assert {canonicalize_name(r.name): r.specifier for r in build}.items() <= locked.items()


def test_the_check_catches_a_dependency_missing_unhashed_or_out_of_range() -> None:
    lock = parse_lock(
        "openai==3.60.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via storyloop\nredis==8.1.0\n"
    )
    wanted = [Requirement("openai>=4,<5"), Requirement("redis>=5,<9"), Requirement("pydantic<3")]
    assert missing_from_lock(wanted, lock) == [
        "openai: 3.60.0 is outside <5,>=4",
        "redis: no --hash",
        "pydantic: not in the lock",
    ]


def test_the_check_catches_an_unpinned_lock_entry() -> None:
    with pytest.raises(ValueError, match="not pinned"):
        parse_lock("aiohttp>=3.10 \\\n    --hash=sha256:" + "b" * 64 + "\n")


def test_the_check_catches_a_missing_or_loose_major_bound() -> None:
    lock = {"openai": Pin(Version("3.60.0"), 1), "ruff": Pin(Version("0.17.6"), 1)}
    wanted = [Requirement("openai>=1.40"), Requirement("ruff>=0.6,<100"), Requirement("x>=1,<2")]
    assert unbounded(wanted, lock) == [
        "openai: no major bound (<N)",
        "ruff: bound <100 lets a new major in",
    ]


# --- the install paths: bootstrap (and so CI) and the Dockerfile use the locks -------------------


def dockerfile_runs() -> list[str]:
    text = read(ROOT / "Dockerfile").replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("RUN ")]


def dockerignore_keeps(path: str) -> bool:
    """Docker's rule, enough for our allowlist: the last pattern matching the path or a parent."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    kept = True
    for raw in read(ROOT / ".dockerignore").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated, pattern = line.startswith("!"), line.lstrip("!")
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            kept = negated
    return kept


def test_the_dockerfile_installs_app_lock_with_hashes_then_the_package_alone() -> None:
    installs = [run for run in dockerfile_runs() if "pip install" in run]
    assert any("--require-hashes -r requirements/app.lock" in run for run in installs)
    # Every other pip install resolves nothing.
    assert all("--require-hashes" in run or "--no-deps" in run for run in installs)
    text = read(ROOT / "Dockerfile")
    assert "COPY requirements/app.lock" in text
    # The build context keeps the lock (an allowlist .dockerignore would silently drop it).
    assert dockerignore_keeps("requirements/app.lock")
    assert not dockerignore_keeps("requirements/dev.lock")


def test_bootstrap_installs_dev_lock_with_hashes_then_the_package_alone() -> None:
    script = read(ROOT / ".ci" / "bootstrap")
    installs = [line.strip() for line in script.splitlines() if "pip install" in line]
    assert any("--require-hashes -r requirements/dev.lock" in line for line in installs)
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs)
    # A changed lock is installed again: the stamp is derived from the lock's content.
    assert "requirements/dev.lock" in script.split("stamp=", 1)[1].split("fi", 1)[0]
    # CI goes through bootstrap: .ci/run -> .ci/test -> .ci/bootstrap.
    assert "bash .ci/test" in read(ROOT / ".ci" / "run")
    assert "bash .ci/bootstrap" in read(ROOT / ".ci" / "test")
