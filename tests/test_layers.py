"""The layers of common/ as docs/architecture.md gives them, derived from the imports: every
module listed once in its package's row, every import to its own layer or one listed before
it, no import circle; and every file a document cites exists."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\| (\w+) \| `(common/(?:\w+/)?)` \| ([^|]+) \|", re.MULTILINE)
CITED = re.compile(r"(?<![\w/.])((?:common|scripts|tests|docs|201-space|DARTS-space)/[\w/.-]*\w\.(?:py|md|png))")
AUTHORS_FILES = {"201-space/search_model.py"}  # files of the authors' code, named where it is checked


def documented_layers():
    """[(layer, package folder, {module names})] in the document's order."""
    rows = [(layer, folder, set(re.findall(r"`(\w+)`", modules))) for layer, folder, modules in ROW.findall(
        DOC.read_text())]
    assert rows, "docs/architecture.md has no layer table"
    return rows


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, known):
    """The modules of `known` that `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found - {module_name(path)}


def common_graph():
    modules = {module_name(path): path for path in (ROOT / "common").rglob("*.py")}
    return {name: imports_of(path, modules) for name, path in modules.items()}


def layer_of(module, rows):
    for index, (_, folder, names) in enumerate(rows):
        package = folder.rstrip("/").replace("/", ".")
        if module == package or (module.rpartition(".")[0] == package and module.rpartition(".")[2] in names):
            return index
    return None


def test_every_module_of_common_is_in_its_package_row_once():
    rows = documented_layers()
    for _, folder, names in rows:
        on_disk = {path.stem for path in (ROOT / folder).glob("*.py") if path.stem != "__init__"}
        assert names == on_disk, (folder, sorted(names ^ on_disk))


def test_no_module_imports_from_a_layer_listed_after_its_own():
    rows = documented_layers()
    upward = []
    for module, imported in common_graph().items():
        own = layer_of(module, rows)
        assert own is not None, f"{module} is in no row of docs/architecture.md"
        upward += [f"{module} ({rows[own][0]}) -> {target} ({rows[layer_of(target, rows)][0]})"
                   for target in imported if layer_of(target, rows) > own]
    assert not upward, upward


def test_the_documented_order_is_one_the_imports_allow_and_every_layer_is_used_above_it():
    """Each layer but the first is built on the one listed before it or lower: no row could move
    down without breaking the rule, so the table's order is the imports' order."""
    rows = documented_layers()
    reaches = {index: set() for index in range(len(rows))}
    for module, imported in common_graph().items():
        reaches[layer_of(module, rows)] |= {layer_of(target, rows) for target in imported}
    for index in range(1, len(rows)):
        assert reaches[index] - {index}, f"layer {rows[index][0]} imports nothing of the layers before it"
    assert 0 in set().union(*(reaches[i] for i in range(1, len(rows))))


def test_no_import_circle_in_common():
    graph = common_graph()
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join(path + [module])
        state[module] = "open"
        for target in sorted(graph[module]):
            visit(target, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("folder", ["common", "201-space", "DARTS-space", "scripts", "tests", "docs"])
def test_every_file_the_code_and_documents_cite_exists(folder):
    files = [path for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".md")
             and "gpu" not in path.relative_to(ROOT).parts[1:2]]  # docs/gpu/: reports of past checkouts
    if folder == "docs":
        files.append(ROOT / "README.md")
    missing = sorted({f"{path.relative_to(ROOT)}: {cited}" for path in files
                      for cited in CITED.findall(path.read_text())
                      if cited not in AUTHORS_FILES and "NAME" not in cited and not (ROOT / cited).exists()})
    assert not missing, missing
