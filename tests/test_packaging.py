"""The project's setup files agree with each other."""

from __future__ import annotations

import re
import tomllib

import yaml

from hybridsched.paths import repo_root


def _name_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    """Tests that environment.yml lists exactly the runtime dependencies of pyproject.toml, with the same pins."""
    root = repo_root()
    py = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((root / "environment.yml").read_text())["dependencies"]
    conda = dict(
        _name_spec(d) for d in env if isinstance(d, str) and not d.startswith(("python", "pip"))
    )
    assert conda == dict(_name_spec(d) for d in py)


def test_ci_calls_the_readme_test_command():
    """Tests that .ci/run runs `make test`, the command the README gives for the tests."""
    root = repo_root()
    assert "make test" in (root / ".ci" / "run").read_text()
    assert "make test" in (root / "README.md").read_text()
