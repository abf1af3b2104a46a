"""The layout is the architecture: each folder of mbtest/ is one layer, and imports only point
down (CONTRIBUTING.md states the order). Checked from the source, imports inside functions
included, so a shortcut upward cannot hide in a function body."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent.parent / "mbtest"

# Bottom to top; folders on one line are siblings and must not import each other.
LAYERS = (
    ("errors",),
    ("mptcp",),
    ("packet",),
    ("host",),
    ("endpoints", "observe", "middlebox"),
    ("testbed",),
    ("verdict",),
    ("report",),
    ("experiment", "probe"),
    ("probes",),  # probe files shipped as data: they use the probe API
    ("cli",),
)
TIER = {name: tier for tier, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> str | None:
    """mbtest.packet.edit -> packet; mbtest (the package itself) -> errors (the root)."""
    parts = module.split(".")
    if parts[0] != "mbtest":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in TIER else "errors"


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from mbtest import matrix` names a module too
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_folder_is_a_known_layer():
    folders = {
        p.relative_to(PACKAGE).parts[0] for p in sources() if len(p.relative_to(PACKAGE).parts) > 1
    }
    assert folders <= set(TIER), f"add {folders - set(TIER)} to LAYERS and CONTRIBUTING.md"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    rel = path.relative_to(PACKAGE)
    own = rel.parts[0] if len(rel.parts) > 1 else "errors"
    wrong = []
    for line, module in imports(path):
        target = layer_of(module)
        if target is None or target == own:
            continue
        if TIER[target] >= TIER[own]:
            wrong.append(f"line {line}: {module} ({target} is not below {own})")
    assert not wrong, f"{rel} imports upward or sideways: {wrong}"


def test_the_check_catches_an_upward_import(tmp_path):
    """The check itself can fail: a packet module importing the CLI is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mbtest.cli import app\n")
    (line, module), *_ = imports(bad)
    assert line == 2 and layer_of(module) == "cli" and TIER["cli"] > TIER["packet"]
