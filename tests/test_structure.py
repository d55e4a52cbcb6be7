"""The package's shape, as docs/architecture.md states it: layering, one render path, no
import cycle, and modules small enough to read. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "ss3d"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path], *, runtime_only: bool = True) -> set[str]:
    """The ss3d modules ``path`` imports (``if TYPE_CHECKING:`` blocks left out), with a
    ``from ss3d.x import y`` counted as ``ss3d.x.y`` when that is a module."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if (runtime_only and isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test)):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("ss3d"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ss3d"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return {m for m in out if m in modules}


def test_evaluation_imports_no_stage_and_the_report_reads_the_summary_from_eval():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("ss3d.eval"):
            stages = sorted(m for m in _imports(path, modules, runtime_only=False)
                            if m.startswith("ss3d.stages"))
            assert not stages, f"{name} imports {stages}"
    report = _imports(modules["ss3d.report"], modules, runtime_only=False)
    assert "ss3d.stages.evaluate" not in report


def test_compositing_lives_in_volume_only():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "volume.py":
            assert "emission_absorption" not in path.read_text(), path


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how re-exports work, not a cycle
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > limit]


def test_stage_modules_and_functions_stay_readable():
    for path in sorted((PACKAGE / "stages").glob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= 500, f"{path.name}: {lines} lines (at most 500)"
        assert not _long_functions(path, 100)


def test_procedural_category_modules_stay_small():
    folder = PACKAGE / "data" / "procedural"
    if not folder.is_dir():
        pytest.fail("the procedural world is a package: ss3d/data/procedural/")
    for path in sorted(folder.glob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= 300 or path.stem in {"builder", "primitives", "materials", "registry",
                                             "__init__"}, f"{path.name}: {lines} lines"


#: The layers of docs/architecture.md, bottom first: a module imports only from its own layer
#: or the ones above it in this list (the cycle test keeps each layer acyclic).
LAYERS: list[tuple[str, ...]] = [
    ("ss3d", "ss3d.files", "ss3d.geometry", "ss3d.fused", "ss3d.viz", "ss3d.cameras",
     "ss3d.image_metrics", "ss3d.engine", "ss3d.data.hashing", "ss3d.data.locks",
     "ss3d.data.taxonomy"),
    ("ss3d.data",),
    ("ss3d.config",),
    ("ss3d.model", "ss3d.unified_model"),
    ("ss3d.volume",),
    ("ss3d.hypotheses", "ss3d.scoring"),
    ("ss3d.eval",),
    ("ss3d.tracking",),
    ("ss3d.stages",),
    ("ss3d.report", "ss3d.reconstruct", "ss3d.notebooks", "ss3d.pipeline", "ss3d.sweep",
     "ss3d.sweep_report", "ss3d.cli"),
]


def _layer(module: str) -> int:
    best, found = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            exact = module == prefix
            if (exact or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix) + exact, index
    assert found >= 0, f"{module} is in no layer of docs/architecture.md"
    return found


def test_data_flows_one_way_through_the_layers():
    modules = _modules()
    wrong = [f"{name} (layer {_layer(name)}) imports {m} (layer {_layer(m)})"
             for name, path in modules.items()
             for m in _imports(path, modules, runtime_only=False)
             if _layer(m) > _layer(name)]
    assert not wrong, "\n".join(wrong)


def test_the_command_line_answers_without_importing_the_heavy_stack():
    """``ss3d --help`` and ``ss3d config`` import no torch, MLflow, trimesh or renderer: each
    subcommand imports what it runs when it runs."""
    import subprocess
    import sys

    heavy = ("torch", "trimesh", "mlflow", "matplotlib", "pyrender", "h5py", "cv2")
    code = ("import sys, ss3d.cli\n"
            "ss3d.cli.build_parser()\n"
            "from ss3d.config import load_config\n"
            "load_config(None, {'data.categories': ['car']})\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout


def test_reconstruct_from_a_checkpoint_path_does_not_import_mlflow():
    """``ss3d reconstruct --model file.pt`` needs the default config and the network, not the
    tracking store: MLflow (about a second of import) loads only for a run id or a registry
    name."""
    import subprocess
    import sys

    code = ("import sys, ss3d.cli, ss3d.reconstruct\n"
            "ss3d.cli._load(ss3d.cli.build_parser().parse_args("
            "['reconstruct', 'x.png', '--mask', 'm.png', '--model', 'm.pt', '-o', 'x.obj']))\n"
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_readme_fits_on_a_screen_and_links_resolve():
    """README ≤ 350 lines (the results log lives in docs/results.md); its relative links exist."""
    import re

    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 350
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (REPO / target).exists(), target
