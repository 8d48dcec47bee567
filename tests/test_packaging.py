"""The project's setup files agree with each other: pyproject.toml, the lock, environment.yml."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from hybridsched.paths import repo_root


def _lock() -> dict[str, str]:
    out = {}
    for line in (repo_root() / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[_norm(name)] = version
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]


def test_lock_pins_every_dependency_within_pyproject_ranges():
    """Tests that requirements.lock pins every runtime and dev dependency of pyproject.toml at
    a version its range admits (so `make venv` installs a set pyproject allows)."""
    lock = _lock()
    project = _pyproject()
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    for r in map(Requirement, reqs):
        assert _norm(r.name) in lock, f"{r.name} is not in requirements.lock"
        assert r.specifier.contains(lock[_norm(r.name)]), (r.name, lock[_norm(r.name)])


def test_environment_yml_pins_the_locked_versions():
    """Tests that environment.yml lists exactly the runtime dependencies of pyproject.toml,
    each pinned to the version of requirements.lock."""
    lock = _lock()
    env = yaml.safe_load((repo_root() / "environment.yml").read_text())["dependencies"]
    conda = {}
    for d in env:
        if isinstance(d, str) and not d.startswith(("python", "pip")):
            name, version = d.split("==")
            conda[_norm(name)] = version
    runtime = {_norm(Requirement(r).name) for r in _pyproject()["dependencies"]}
    assert set(conda) == runtime
    assert conda == {n: lock[n] for n in runtime}


def test_ci_calls_the_readme_test_command():
    """Tests that .ci/run runs `make test`, the command the README gives for the tests."""
    root = repo_root()
    assert "make test" in (root / ".ci" / "run").read_text()
    assert "make test" in (root / "README.md").read_text()
