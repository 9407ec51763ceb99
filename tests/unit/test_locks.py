"""Installs that reproduce: the venv holds exactly the locked versions, the locks sit inside the
ranges pyproject.toml declares, and an archive says what it was built with."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from handler.api.build_info import BUILD_INFO_FILE, installed_versions, version_differences

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "locks"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            found[normalized(match.group(1))] = match.group(2)
    return found


def test_every_lock_pins_with_hashes_and_leaves_torch_out():
    for lock in sorted(LOCKS.glob("*.txt")):
        if lock.name == "torch.txt":
            continue
        text = lock.read_text(encoding="utf-8")
        pinned = pins(lock)
        assert pinned, lock.name
        assert "torch" not in pinned, f"{lock.name} would replace the CPU torch installed first"
        assert text.count("--hash=sha256:") >= len(pinned), f"{lock.name}: every pin needs its hashes"


@pytest.mark.skipif(os.environ.get("HFLABELS_UNLOCKED") == "1", reason="a venv built from the ranges (test-latest)")
def test_the_venv_holds_exactly_the_locked_versions():
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    installed = {normalized(m.group(1)): m.group(2) for m in map(PIN.match, frozen.splitlines()) if m}
    installed.pop("torch", None)  # installed first, pinned in the Makefile (the CPU build)
    locked = pins(LOCKS / "venv.txt") | pins(LOCKS / "no-deps.txt")
    # pip freeze leaves out pip, setuptools and wheel.
    for name in ("pip", "setuptools", "wheel"):
        locked.pop(name, None)
    missing = {name: v for name, v in locked.items() if installed.get(name) != v}
    extra = {name: v for name, v in installed.items() if name not in locked}
    assert not missing and not extra, f"not as locked: {missing}; not in the lock: {extra}"
    assert installed_versions(("torch",))["torch"].startswith("2.13.0")


def test_the_locked_versions_sit_inside_the_declared_ranges():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [Requirement(text) for text in project["dependencies"]]
    declared += [Requirement(text) for extra in project["optional-dependencies"].values() for text in extra]
    locked = pins(LOCKS / "venv.txt")
    for requirement in declared:
        name = normalized(requirement.name)
        if name == "torch":
            continue
        assert name in locked, f"{requirement} is not locked"
        inside = requirement.specifier.contains(locked[name], prereleases=True)
        assert inside, f"{name}=={locked[name]} vs {requirement}"
    assert "tested with" in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_an_archive_records_its_versions_and_a_different_one_is_warned_about(sentiment_model, tmp_path, caplog):
    import shutil

    from support import load_handler

    from hflabels.archiving import archive

    built = archive(sentiment_model, "versions", export_path=tmp_path)
    with zipfile.ZipFile(built.path) as mar:
        recorded = json.loads(mar.read(BUILD_INFO_FILE))["built_with"]
    assert recorded == installed_versions()
    folder = shutil.copytree(sentiment_model, tmp_path / "folder")
    assert version_differences(folder) == []  # made before build-info.json: nothing to compare
    (folder / BUILD_INFO_FILE).write_text(json.dumps({"built_with": {**recorded, "transformers": "5.0.0"}}))
    assert version_differences(folder) == [
        f"transformers 5.0.0 built this archive, {recorded['transformers']} serves it"
    ]
    with caplog.at_level(logging.WARNING):
        load_handler(folder)
    assert any("transformers 5.0.0 built this archive" in record.getMessage() for record in caplog.records)
