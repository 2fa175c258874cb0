"""Fail when a pin of a top-level requirements file is missing from its lock file.

requirements.txt → requirements.lock, requirements-demo.txt → requirements-demo.lock,
requirements-dev.txt → requirements-dev.lock, requirements-bench.txt → requirements-bench.lock:
each ``name==version`` line of the first must be in the second, as pip-compile writes it. A
miss means the file was edited without `make lock`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PAIRS = {
    "requirements.txt": "requirements.lock",
    "requirements-demo.txt": "requirements-demo.lock",
    "requirements-dev.txt": "requirements-dev.lock",
    "requirements-bench.txt": "requirements-bench.lock",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    """A package name as pip-compile writes it (PEP 503: lower case, runs of -_. → -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonical(match[1])] = match[3]
    return pins


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = []
    for source, lock in PAIRS.items():
        if not (root / lock).exists():
            problems.append(f"{lock} is missing: run `make lock`")
            continue
        pins = locked(root / lock)
        for line in (root / source).read_text().splitlines():
            match = PIN.match(line.strip())
            if match is None:
                continue
            name, version = canonical(match[1]), match[3]
            if pins.get(name) != version:
                problems.append(
                    f"{source} pins {name}=={version} but {lock} has "
                    f"{name + '==' + pins[name] if name in pins else 'none'}: run `make lock`"
                )
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
