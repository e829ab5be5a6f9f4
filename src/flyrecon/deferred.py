"""Import a library without the modules it imports at load time but seldom calls.

pty-chi imports torchvision (for one image filter), scikit-learn and scipy.spatial (for k-means
batching) when it loads, about 1.7 s of every run on a laptop core, although a default
reconstruction uses none of them. `stand_ins` puts placeholder modules in `sys.modules` for
the length of one import. What the imported code keeps of a placeholder (the module, or a
name imported from it) turns into the real thing when first used, so code that does use those
names still works.

`eager_dynamo` does the same for `torch._dynamo`, which torch.optim imports on an optimizer's
first step (another 1.3 s) although eager code only calls two no-ops of it.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any


class DeferredModule(types.ModuleType):
    """Stands in for the module of the same name; reading an attribute imports the real one."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or sys.modules.get(self.__name__) is self:
            # dunders (import machinery) and reads while the placeholder is installed stay
            # here: the real module cannot be imported under it
            raise AttributeError(f"deferred module {self.__name__!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(self.__name__), attr)


def deferred_callable(module: str, name: str) -> Callable[..., Any]:
    """A function that imports `module` when first called and calls its `name`."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = __name__
    call.__doc__ = f"`{module}.{name}`, imported on first call."
    return call


def _placeholder_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Every dotted prefix of `names`, parents first."""
    prefixes = {".".join(n.split(".")[: i + 1]) for n in names for i in range(n.count(".") + 1)}
    return tuple(sorted(prefixes, key=lambda n: (n.count("."), n)))


@contextmanager
def stand_ins(modules: Mapping[str, Sequence[str]]) -> Iterator[None]:
    """Placeholders for `modules` while the body runs.

    `modules` maps a dotted module name to the names the guarded code imports from it with
    `from module import name` (each becomes a `deferred_callable`). A module already imported
    is left alone, and so is a parent package already imported: the placeholder then sits
    under the real package, as its attribute until the real module replaces it. The
    placeholders leave `sys.modules` when the body ends, so any later import gets the real
    modules. Another thread that imports one of these modules during the body would get the
    placeholder: `engine.warm_up` imports pty-chi while flyrecon's main thread only loads
    data with numpy.
    """
    wanted = tuple(name for name in modules if name not in sys.modules)
    installed: dict[str, DeferredModule] = {}
    for full in _placeholder_names(wanted):
        if full in sys.modules:
            continue  # a real parent package stays
        module = installed[full] = DeferredModule(full)
        parent, _, child = full.rpartition(".")
        if parent:  # as an import would; a real parent keeps it until the real one loads
            setattr(installed.get(parent) or sys.modules[parent], child, module)
    for full in wanted:
        for name in modules[full]:
            setattr(installed[full], name, deferred_callable(full, name))
    sys.modules.update(installed)
    try:
        yield
    finally:
        for full, module in installed.items():
            if sys.modules.get(full) is module:
                del sys.modules[full]
            # a real parent that loads its submodules on demand (scipy) gets them that way
            # again; one that does not keeps the placeholder, which forwards to the real one
            parent, _, child = full.rpartition(".")
            owner = vars(sys.modules[parent]) if parent in sys.modules else {}
            if owner.get(child) is module and "__getattr__" in owner:
                delattr(sys.modules[parent], child)


class _EagerDynamo(types.ModuleType):
    """Stands in for `torch._dynamo` in a process that never compiles.

    torch.optim calls two of its functions around every step: `graph_break()` (a no-op outside
    compiled code) and, once per decorated method, `disable(fn)` (which only matters to the
    compiler). Here both are what they amount to in eager mode. Reading any other attribute
    imports the real module and answers from it.
    """

    def __init__(self) -> None:
        super().__init__("torch._dynamo")
        self.disabled: list[Callable[..., Any]] = []

    @staticmethod
    def graph_break(msg: str = "") -> None:
        """Nothing to break outside compiled code."""

    def disable(self, fn: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        """`fn` itself (eager code is never compiled); remembered to undo torch's cache."""
        if fn is None:
            return lambda f: self.disable(f)
        self.disabled.append(fn)
        return fn

    def __getattr__(self, attr: str) -> Any:
        # `__path__`: an import of a submodule (`import torch._dynamo.config`) needs the real
        # package; other dunders are the import machinery asking about this module itself
        if attr.startswith("__") and attr != "__path__":
            raise AttributeError(f"eager stand-in for torch._dynamo has no {attr!r}")
        if sys.modules.get(self.__name__) is self:
            sys.modules.pop(self.__name__, None)  # another thread may have got here first
        return getattr(importlib.import_module(self.__name__), attr)


@contextmanager
def eager_dynamo() -> Iterator[None]:
    """Run torch eager code without importing `torch._dynamo` (1.3 s on a laptop core).

    torch.optim imports the compiler's front end on an optimizer's first step only to call
    `graph_break()` and `disable()`, which do nothing for eager code (`_EagerDynamo`). The
    stand-in sits in `sys.modules` while the body runs. When the body ends it leaves, and so do
    the `__dynamo_disable` entries torch cached with it, so a later `torch.compile` in the
    process gets the real module and wraps those methods as usual. Does nothing when
    `torch._dynamo` is already imported. Code in other threads that imports `torch._dynamo`
    during the body gets the stand-in, which loads the real module for anything else.
    """
    name = "torch._dynamo"
    if name in sys.modules:
        yield
        return
    stand_in = _EagerDynamo()
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        for fn in stand_in.disabled:
            if getattr(fn, "__dict__", {}).get("__dynamo_disable") is fn:
                del fn.__dynamo_disable
