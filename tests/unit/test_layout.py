"""The layering the development page of the docs draws, enforced: what each part of the house may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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


def test_the_product_never_imports_the_lab():
    for package in ("handler", "hflabels"):
        for path in (REPO / package).rglob("*.py"):
            assert "lab" not in top_levels(imported_modules(path)), f"{path.relative_to(REPO)} imports the lab"


def test_the_lab_builds_on_the_product_only():
    for path in (REPO / "lab").rglob("*.py"):
        ours = {m for m in top_levels(imported_modules(path)) if m in {"handler", "hflabels", "lab", "tests"}}
        assert "tests" not in ours, path


def test_scripts_are_thin_and_patch_no_import_path():
    for path in sorted((REPO / "scripts").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text, path
        assert len(text.splitlines()) <= 12, f"{path.name} holds logic; it belongs in hflabels"
        assert "run_command(" in text, path
    for package in ("hflabels", "lab"):
        for path in sorted((REPO / package).rglob("*.py")):
            assert "sys.path" not in path.read_text(encoding="utf-8"), path


def test_the_console_lists_the_workflow_on_one_screen():
    from hflabels.cli import COMMANDS

    console = Path(sys.executable).with_name("hflabels")
    assert console.exists(), "pip install -e . installs the hflabels command"
    result = subprocess.run([str(console), "--help"], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in result.stdout
    assert len(COMMANDS) <= 10
    assert len(result.stdout.splitlines()) <= 40, "hflabels --help must fit one screen"
    for tool in ("bench", "soak", "real-data", "accelerations"):
        assert f"    {tool} " not in result.stdout, f"{tool} is a lab tool, not a workflow command"
    archive_help = subprocess.run([str(console), "archive", "--help"], capture_output=True, text=True, check=True)
    assert "--mapping" in archive_help.stdout and "usage: hflabels archive" in archive_help.stdout
    script_help = subprocess.run([sys.executable, str(REPO / "scripts" / "archive.py"), "--help"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
    assert "--mapping" in script_help.stdout and "usage: archive.py" in script_help.stdout


HEAVY = {"torch", "transformers", "numpy", "scipy", "sklearn", "matplotlib", "ts", "captum"}


def _help_in_a_fresh_interpreter(program: str, name: str) -> tuple[str, set[str], float]:
    code = (f"import sys, time; start = time.perf_counter()\nfrom {program} import {name.split(':')[0]} as cli\n"
            f"text = cli.parser_for({name.split(':')[1]!r}).format_help()\n"
            "print(time.perf_counter() - start); print(' '.join(sorted(sys.modules))); print(text)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    seconds, modules, text = result.stdout.split("\n", 2)
    return text, set(modules.split()), float(seconds)


def test_every_command_answers_help_at_once_with_its_defaults_and_an_example():
    from hflabels.cli import COMMANDS

    for name in COMMANDS:
        text, modules, seconds = _help_in_a_fresh_interpreter("hflabels.cli", f"HFLABELS:{name}")
        heavy = top_levels(modules) & HEAVY
        assert not heavy, f"hflabels {name} --help imports {sorted(heavy)}"
        assert seconds < 1.0, f"hflabels {name} --help took {seconds:.2f} s"
        assert f"hflabels {name} " in text.split("options:")[0].split("\n", 2)[-1], f"{name} --help shows no example"
        assert "(default:" in text or name in ("demo", "plot-evaluation"), f"hflabels {name} --help shows no default"


def test_every_lab_tool_has_a_help_and_a_make_target():
    from lab.cli import LAB, TOOLS

    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for name in TOOLS:
        assert f"usage: python -m lab {name}" in LAB.parser_for(name).format_help()
        assert f"$(LAB) {name}" in makefile, f"make {name} does not run python -m lab {name}"


def test_the_wheel_ships_the_defaults_and_leaves_the_lab_out(tmp_path):
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for default in ("model-config.yaml", "config.properties", "log4j2.xml"):
        assert f"hflabels/defaults/{default}" in names, f"{default} is not package data"
    assert "handler/torchserve_handler.py" in names
    assert not any(name.startswith(("lab/", "tests/")) for name in names)


def test_torchserve_finds_exactly_one_handler_class_in_the_entry_module():
    from ts.model_loader import TsModelLoader

    import handler.torchserve_handler as entry

    handle, initialize = TsModelLoader()._get_class_entry_point(entry)
    assert handle.__self__.__class__.__name__ == "TransformersLabelHandler"
