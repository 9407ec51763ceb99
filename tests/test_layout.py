"""The layering the README's Layout section draws, enforced: what each part of the house may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HANDLER = REPO / "handler"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top_levels(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def modules_loaded_by(statement: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize("package", ["handler.api", "handler.postprocess"])
def test_pure_layers_load_neither_torch_nor_torchserve(package):
    modules = [p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".") for p in
               sorted((REPO / package.replace(".", "/")).glob("*.py"))]  # fmt: skip
    loaded = modules_loaded_by("\n".join(f"import {module}" for module in modules))
    assert set(modules) <= loaded  # the imports really ran
    heavy = top_levels(loaded) & {"torch", "ts", "transformers"}
    assert not heavy, f"{package} pulls in {sorted(heavy)}"


def test_pure_layers_import_only_their_own_or_lower_layers():
    allowed = {"api": {"handler.api"}, "postprocess": {"handler.api", "handler.postprocess"}}
    for layer, prefixes in allowed.items():
        for path in sorted((HANDLER / layer).glob("*.py")):
            ours = {m for m in imported_modules(path) if m.startswith("handler")}
            strays = {m for m in ours if not any(m == p or m.startswith(p + ".") for p in prefixes)}
            assert not strays, f"{path.relative_to(REPO)} imports {sorted(strays)}"


def test_only_the_serving_layer_and_the_entry_point_know_torchserve():
    knows_ts = sorted(
        path.relative_to(HANDLER).as_posix()
        for path in HANDLER.rglob("*.py")
        if "ts" in top_levels(imported_modules(path))
    )
    assert knows_ts, "the entry point imports ts"
    assert all(name.startswith("serving/") or name == "torchserve_handler.py" for name in knows_ts), knows_ts


def test_the_engine_knows_no_task_and_no_server():
    for path in sorted((HANDLER / "engine").glob("*.py")):
        imports = imported_modules(path)
        assert not {m for m in imports if m.startswith(("handler.tasks", "handler.serving", "handler.registry"))}, path
        assert "ts" not in top_levels(imports), path


def test_the_handler_never_imports_the_tools():
    for path in HANDLER.rglob("*.py"):
        assert "hflabels" not in top_levels(imported_modules(path)), path


def test_archiving_checks_a_folder_without_loading_task_runners():
    loaded = modules_loaded_by("import hflabels.archiving")
    assert "handler.engine.model_folder" in loaded
    runners = {m for m in loaded if m.startswith("handler.tasks") or m == "handler.registry"}
    assert not runners, f"archiving loads {sorted(runners)}"


def test_scripts_are_thin_and_patch_no_import_path():
    for path in sorted((REPO / "scripts").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text, path
        assert len(text.splitlines()) <= 12, f"{path.name} holds logic; it belongs in hflabels"
        assert "run_command(" in text, path
    for path in sorted((REPO / "hflabels").rglob("*.py")):
        assert "sys.path" not in path.read_text(encoding="utf-8"), path


def test_every_command_has_a_script_and_the_console_entry_point_lists_them(tmp_path):
    from hflabels.cli import COMMANDS

    scripts = {path.stem for path in (REPO / "scripts").glob("*.py")}
    assert scripts == {module for module, _ in COMMANDS.values()}
    console = Path(sys.executable).with_name("hflabels")
    assert console.exists(), "pip install -e . installs the hflabels command"
    result = subprocess.run([str(console), "--help"], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in result.stdout
    archive_help = subprocess.run([str(console), "archive", "--help"], capture_output=True, text=True, check=True)
    assert "--mapping" in archive_help.stdout and "usage: hflabels archive" in archive_help.stdout
    script_help = subprocess.run([sys.executable, str(REPO / "scripts" / "archive.py"), "--help"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
    assert "--mapping" in script_help.stdout and "usage: archive.py" in script_help.stdout


def test_torchserve_finds_exactly_one_handler_class_in_the_entry_module():
    from ts.model_loader import TsModelLoader

    import handler.torchserve_handler as entry

    handle, initialize = TsModelLoader()._get_class_entry_point(entry)
    assert handle.__self__.__class__.__name__ == "TransformersLabelHandler"
