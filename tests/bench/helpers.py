"""Loading bench/ scripts in tests (bench/ is not a package, and is kept off sys.path:
its http.py would shadow the standard library's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_bench(name: str) -> ModuleType:
    """``bench/<name>.py`` as a module, registered as ``smsgw_bench_<name>`` (so that its
    dataclasses and pickling find it)."""
    spec = importlib.util.spec_from_file_location(f"smsgw_bench_{name}",
                                                  ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
