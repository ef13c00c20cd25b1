"""The lock (requirements/*.txt) agrees with pyproject.toml: every dependency is pinned, with hashes, at a
version its range admits. Refresh with `bin/lock` when this fails."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every pinned package of a lock file."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def requirements(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if extra:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    reqs += [Requirement(line.split("#")[0]) for line in (ROOT / "requirements/build.in").read_text().splitlines()
             if line.split("#")[0].strip()]
    return reqs


@pytest.mark.parametrize(("lock", "extra"), [("runtime.txt", None), ("test.txt", "test")])
def test_lock_pins_every_dependency_within_its_range(lock: str, extra: str | None) -> None:
    pinned = pins(ROOT / "requirements" / lock)
    problems = []
    for req in requirements(extra):
        name = canonicalize_name(req.name)
        if name not in pinned:
            problems.append(f"{req.name} is not in requirements/{lock}")
            continue
        version, hashes = pinned[name]
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} is outside {req.specifier}")
        for extra_name in req.extras:  # psycopg[binary] pins psycopg-binary too
            if canonicalize_name(f"{req.name}-{extra_name}") not in pinned and name == "psycopg":
                problems.append(f"{req.name}[{extra_name}] is not fully pinned")
    problems += [f"{name}=={v} has no hash" for name, (v, hashes) in pinned.items() if hashes == 0]
    assert not problems, "run bin/lock: " + "; ".join(problems)


def test_runtime_and_test_locks_agree() -> None:
    runtime, test = pins(ROOT / "requirements/runtime.txt"), pins(ROOT / "requirements/test.txt")
    differing = {n: (v, test.get(n, ("missing",))[0]) for n, (v, _) in runtime.items() if test.get(n, ("",))[0] != v}
    assert not differing, f"run bin/lock: the runtime and test locks pin different versions: {differing}"


def vias(lock: Path) -> dict[str, set[str]]:
    """name -> what uv says each pinned package is there for ("palanquee (pyproject.toml)", "-r …", a package)."""
    found: dict[str, set[str]] = {}
    current, listing = "", False
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current, listing = canonicalize_name(match.group(1)), False
            found[current] = set()
        elif current and line.strip().startswith("# via"):
            rest = line.strip()[len("# via"):].strip()
            listing = not rest
            if rest:
                found[current].add(rest)
        elif current and listing and line.strip().startswith("#   "):
            found[current].add(line.strip()[1:].strip())
    return found


@pytest.mark.parametrize(("lock", "extra"), [("runtime.txt", None), ("test.txt", "test")])
def test_every_pin_is_still_wanted(lock: str, extra: str | None) -> None:
    """A dependency removed from pyproject.toml leaves no pin behind: each pin is named by pyproject.toml,
    by requirements/build.in, or by another pin."""
    wanted = {canonicalize_name(req.name) for req in requirements(extra)}
    found = vias(ROOT / "requirements" / lock)
    stale = []
    for name, reasons in sorted(found.items()):
        direct = {r for r in reasons if r.startswith("palanquee") or r.startswith("-r ")}
        through = {canonicalize_name(r) for r in reasons - direct} & set(found)
        if not (through or (direct and name in wanted)):
            stale.append(name)
    assert not stale, "run bin/lock: pinned but wanted by nothing in pyproject.toml or the lock: " + ", ".join(stale)
