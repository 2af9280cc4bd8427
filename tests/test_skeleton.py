"""The package layout and the purity contract of the cores (STYLE.md house rule 1)."""

import ast
from pathlib import Path

import gateway

ROOT = Path(__file__).resolve().parent.parent
PURE = [ROOT / "gateway" / "smpp", ROOT / "gateway" / "encoding", ROOT / "rules"]
PURE_FILES = [ROOT / "gateway" / "receipts.py"]
FORBIDDEN = {"trio", "socket", "lmdb", "prometheus_client", "time", "random", "asyncio",
             "threading", "os", "subprocess", "h11", "secrets", "datetime.datetime.now"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_version() -> None:
    assert gateway.__version__


def test_pure_cores_import_no_io() -> None:
    files = [f for d in PURE for f in d.rglob("*.py")] + [f for f in PURE_FILES if f.exists()]
    assert files, "no core modules found"
    offenders = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}
