"""vnmlib's layers, read from its imports: no upward import, no import cycle.

Every import counts, the lazy ones inside functions too: a lower layer that
calls up, even late, makes the layers a fiction. The order is
docs/architecture.md's; a package may import its own modules and any lower
layer, never a higher one or a peer of its rank.
"""

import ast
import os

import vnmlib

LIB = os.path.dirname(vnmlib.__file__)

# package (or base module) -> rank; lower ranks are imported by higher ones
LAYERS = {
    "errors": 0, "log": 0, "safe_paths": 1,
    "model": 2,
    "host": 3,
    "linux": 4, "firewall": 4,
    "ovs": 5,
    "elastic": 6, "ovn": 6,
    "nodeport": 7,
    "drivers": 8,
    "contract": 9,
    "ops": 10,
    "cli": 11,
}


def modules():
    """{dotted name: path} of every vnmlib module."""
    found = {}
    for root, dirs, files in os.walk(LIB):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, name), os.path.dirname(LIB))[:-3]
                dotted = rel.replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = os.path.join(root, name)
    return found


def imports_of(name, path, known):
    """The vnmlib modules ``name`` imports (absolute and relative, at any depth)."""
    is_package = path.endswith("__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_package else parts[:-1]
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # "from pkg import module" imports the module; "from module import name" the module
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in graph() if m != "vnmlib" and layer_of(m) not in LAYERS)
    assert not unplaced, f"modules outside every layer (add them to LAYERS and docs): {unplaced}"


def test_no_import_goes_up_or_sideways():
    wrong = []
    for module, targets in graph().items():
        source = layer_of(module)
        for target in targets:
            destination = layer_of(target)
            if destination is None or destination == source:
                continue
            if LAYERS[destination] >= LAYERS.get(source, -1):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    edges = graph()
    cycles = []
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules: Python's normal shape
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_violation(tmp_path):
    """The reader finds a lazy upward import (so a green run means something)."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from ..drivers import load_driver\n")
    known = {"vnmlib.drivers", "vnmlib.host.mod"}
    assert imports_of("vnmlib.host.mod", str(path), known) == {"vnmlib.drivers"}
