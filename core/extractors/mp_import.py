"""Import mediapipe without the matplotlib its drawing helpers import.

`mediapipe/python/solutions/__init__.py` imports `drawing_utils`, which imports
`matplotlib.pyplot`: 28 MB that would stay resident in the daemon for good after the first image,
and through every unload of the models (extractors.unload_idle_seconds), for helpers bestshot never
calls. Those two modules are registered before mediapipe is imported as modules that load
themselves, matplotlib with them, on the first name asked of them (not on import, as the standard
library's LazyLoader would: the import system's own look-up of `__spec__` would trigger it).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_DRAWING = ("drawing_utils", "drawing_styles")


def import_mediapipe() -> ModuleType:
    if "mediapipe" not in sys.modules:
        spec = importlib.util.find_spec("mediapipe")  # a top-level spec: imports nothing
        if spec is not None and spec.submodule_search_locations:
            solutions = Path(next(iter(spec.submodule_search_locations))) / "python" / "solutions"
            for name in _DRAWING:
                _register_lazy(f"mediapipe.python.solutions.{name}", solutions / f"{name}.py")
    import mediapipe

    for name in _DRAWING:  # what the package import binds when it loads them itself
        full = f"mediapipe.python.solutions.{name}"
        if full in sys.modules and not hasattr(mediapipe.solutions, name):
            setattr(mediapipe.solutions, name, sys.modules[full])
    return sys.modules["mediapipe"]


def _register_lazy(fullname: str, path: Path) -> None:
    if fullname in sys.modules or not path.is_file():
        return
    spec = importlib.util.spec_from_file_location(fullname, path)
    if spec is None or spec.loader is None:
        return
    stub = ModuleType(fullname)
    stub.__spec__, stub.__file__ = spec, str(path)
    loaded: list[ModuleType] = []

    def load_on_use(attr: str) -> object:
        if not loaded:
            real = importlib.util.module_from_spec(spec)
            sys.modules[fullname] = real
            try:
                spec.loader.exec_module(real)  # type: ignore[union-attr]
            except BaseException:
                sys.modules[fullname] = stub
                raise
            loaded.append(real)
            parent, _, child = fullname.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, real)
        return getattr(loaded[0], attr)

    stub.__getattr__ = load_on_use  # type: ignore[method-assign]
    sys.modules[fullname] = stub
