"""The layering DESIGN.md describes, checked by reading the package's imports with ``ast``.

Every import counts, the ones inside functions too: a lazy import still ties two modules
together. The one cycle XEduLLM's API forces is allowed: ``Client.run()`` starts the server,
which serves a Client.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parent.parent / "xedullm"
# Client.run() → server runner (lazy): XEduLLM's `chatbot.run()` needs it.
ALLOWED_EDGES = {("xedullm.client", "xedullm.server.runner")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        for target in targets:
            # `from . import x` names a module; `from .m import f` names something in m.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_allowed(graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    return {a: {b for b in bs if (a, b) not in ALLOWED_EDGES} for a, bs in graph.items()}


def _is_package_init(graph: Dict[str, Set[str]], a: str, b: str) -> bool:
    # A package's __init__ re-exporting its own submodules is not a cycle of layers.
    return b.startswith(a + ".")


def test_the_package_has_no_import_cycle_but_client_run():
    graph = _without_allowed(_graph())
    graph = {a: {b for b in bs if not _is_package_init(graph, a, b)} for a, bs in graph.items()}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    # The checker itself: a made-up graph with one cycle and one allowed edge.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_adapters_do_no_io():
    graph = _graph()
    io_modules = ("threading", "queue", "socket", "httpx", "asyncio", "subprocess", "multiprocessing")
    for name, path in _modules().items():
        if not name.startswith("xedullm.protocols"):
            continue
        tree = ast.parse(path.read_text("utf-8"))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and not n.level}
        assert not imported & set(io_modules), (name, imported & set(io_modules))
        assert not {m for m in graph[name] if m.startswith("xedullm.engines")}, name


def test_only_the_client_holds_an_engine():
    for name, path in _modules().items():
        if name.startswith("xedullm.engines") or name == "xedullm.client":
            continue
        text = path.read_text("utf-8")
        assert "._engine" not in text and "_get_engine" not in text, name
        assert not {m for m in _graph()[name] if m.startswith("xedullm.engines")}, name


def test_server_modules_are_grouped_by_concern():
    top = [p.name for p in (PACKAGE / "server").iterdir() if p.suffix == ".py" and p.name != "__init__.py"]
    assert len(top) <= 5, top
    for sub in ("api", "classroom", "store", "admin", "web"):
        assert (PACKAGE / "server" / sub / "__init__.py").is_file(), sub
    names: List[Tuple[str, str]] = [(p.stem, str(p)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    stems = [stem for stem, _ in names]
    assert not {s for s in stems if stems.count(s) > 1} - {"__main__"}, sorted(stems)


def test_no_server_signature_takes_an_untyped_client():
    for path in (PACKAGE / "server").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg == "client":
                        assert arg.annotation is not None and ast.unparse(arg.annotation) != "Any", \
                            (path.name, node.name)
