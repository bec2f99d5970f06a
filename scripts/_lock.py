"""Print requirements.lock: every distribution that pyproject.toml's dependencies and its
`dev` extra need (transitively, with markers evaluated for this machine), pinned to the
version installed in the running interpreter's environment. Used by scripts/lock.sh."""

from __future__ import annotations

import platform
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Installed by the scripts from TORCH_SPEC (a CPU or a CUDA build), never from the lock.
UNLOCKED = {"torch", "murano-server"}


def closure(roots: list[str]) -> dict[str, str]:
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(text), frozenset[str]()) for text in roots]
    while todo:
        requirement, parent_extras = todo.pop()
        environment = [{"extra": extra} for extra in parent_extras] or [{"extra": ""}]
        if requirement.marker and not any(requirement.marker.evaluate(e) for e in environment):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{requirement} is not installed in {sys.prefix}: install it first")
        if name not in UNLOCKED:
            pinned[name] = dist.version
        for text in dist.requires or []:
            todo.append((Requirement(text), frozenset(requirement.extras)))
    return pinned


def main(pyproject: str) -> None:
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    roots = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pinned = closure(roots)
    python = ".".join(platform.python_version_tuple()[:2])
    print("# The exact versions the test suite last passed with (pip constraints).")
    print("# Made by scripts/lock.sh from an installed environment; do not edit by hand.")
    print(f"# Python {python} on {sys.platform}/{platform.machine()}; torch comes from TORCH_SPEC.")
    print("# Used as: pip install -c requirements.lock -e .")
    for name in sorted(pinned):
        print(f"{name}=={pinned[name]}")


if __name__ == "__main__":
    main(sys.argv[1])
