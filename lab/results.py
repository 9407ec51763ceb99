"""Writing a measurement's results JSON with where and when it was measured, so every table and
plot drawn from it (docs/gen_pages.py, lab/plots.py) can say so.

Each document gains ``measured_at`` (UTC, ISO 8601), ``git_commit`` (the checkout's HEAD, with
``+dirty`` for uncommitted changes), ``machine`` (when the command did not record it) and, where it
names a model folder, that folder relative to the repository root (never this machine's absolute path).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from hflabels.paths import REPO_ROOT


def git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def vector_units(flags: frozenset[str] | None = None) -> str:
    """The matrix/vector units that decide this CPU's precision and kernels, in a few words: two
    machines both named "AMD EPYC" serve bf16 on one (Zen 5) and float32 on the other."""
    from handler.engine.execution import cpu_flags

    flags = cpu_flags() if flags is None else flags
    for flag, words in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16"), ("avx512f", "AVX-512, no bf16"),
                        ("avx2", "AVX2 only")):  # fmt: skip
        if flag in flags:
            return words
    return "no AVX2"


def relative_model(value: Any) -> Any:
    """A model folder as the repository names it (build/movie-model), not as this machine does."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    try:
        return Path(value).resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return Path(value).name


def with_provenance(document: dict[str, Any]) -> dict[str, Any]:
    stamped = dict(document)
    stamped["measured_at"] = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    stamped["git_commit"] = git_commit()
    stamped.setdefault("machine", {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()})
    if isinstance(stamped["machine"], dict) and "units" not in stamped["machine"]:
        stamped["machine"] = {**stamped["machine"], "units": vector_units()}
    for key in ("model", "model_dir"):
        if key in stamped:
            stamped[key] = relative_model(stamped[key])
    return stamped


def write_results(path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Write ``document`` with its provenance to ``path``; returns what was written."""
    stamped = with_provenance(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=1, default=str) + "\n")
    return stamped
