"""Placeholders for modules a library imports at load time (flyrecon.deferred, import_ptychi)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyrecon.deferred import DeferredModule, stand_ins


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`heavypkg.sub` (counts its imports) and `consumer`, which imports it at load time."""
    (tmp_path / "heavypkg").mkdir()
    (tmp_path / "heavypkg" / "__init__.py").write_text("")
    (tmp_path / "heavypkg" / "sub.py").write_text(
        textwrap.dedent(
            """
            import builtins
            builtins.heavypkg_loads = getattr(builtins, "heavypkg_loads", 0) + 1
            def double(x):
                return 2 * x
            class Thing:
                pass
            """
        )
    )
    (tmp_path / "consumer.py").write_text(
        "import heavypkg.sub\nfrom heavypkg.sub import double\n"
        "def make():\n    return heavypkg.sub.Thing()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("consumer", "heavypkg", "heavypkg.sub"):
        sys.modules.pop(name, None)
    import builtins

    if hasattr(builtins, "heavypkg_loads"):
        del builtins.heavypkg_loads


def test_the_guarded_import_does_not_load_the_deferred_module(packages: Path) -> None:
    import builtins

    with stand_ins({"heavypkg.sub": ("double",)}):
        import consumer
    assert "heavypkg" not in sys.modules and "heavypkg.sub" not in sys.modules
    assert getattr(builtins, "heavypkg_loads", 0) == 0
    assert isinstance(consumer.heavypkg, DeferredModule)
    # first use imports the real module, once, and gives its real objects
    assert consumer.double(21) == 42
    assert type(consumer.make()).__module__ == "heavypkg.sub"
    assert builtins.heavypkg_loads == 1
    import heavypkg.sub

    assert not isinstance(heavypkg.sub, DeferredModule)
    assert consumer.heavypkg.sub.Thing is heavypkg.sub.Thing


def test_a_module_already_imported_is_left_alone(packages: Path) -> None:
    import heavypkg.sub  # noqa: F401  (the real one, before the guarded import)

    with stand_ins({"heavypkg.sub": ("double",)}):
        import consumer
    assert consumer.heavypkg is sys.modules["heavypkg"]
    assert not isinstance(consumer.heavypkg, DeferredModule)


def test_placeholders_leave_even_when_the_import_fails(packages: Path) -> None:
    (packages / "broken.py").write_text("import heavypkg.sub\nraise RuntimeError('no')\n")
    with pytest.raises(RuntimeError), stand_ins({"heavypkg.sub": ()}):
        import broken  # noqa: F401
    assert "heavypkg" not in sys.modules and "heavypkg.sub" not in sys.modules
    sys.modules.pop("broken", None)


def test_ptychi_loads_without_torchvision_or_sklearn_and_still_gets_them() -> None:
    code = textwrap.dedent(
        """
        import sys
        from flyrecon.engine import import_ptychi
        import_ptychi()
        print(sorted(m for m in ("torchvision", "sklearn") if m in sys.modules))
        import ptychi.io_handles, ptychi.utils
        print(type(ptychi.utils.GaussianBlur(3)).__module__)
        print(ptychi.io_handles.sklearn.cluster.KMeans.__module__)
        import sklearn.cluster, torchvision
        print(sklearn.cluster.KMeans is ptychi.io_handles.sklearn.cluster.KMeans)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = proc.stdout.split("\n")
    assert lines[0] == "[]"
    assert lines[1].startswith("torchvision.transforms")
    assert lines[2].startswith("sklearn.cluster")
    assert lines[3] == "True"


def test_import_ptychi_installs_nothing_once_ptychi_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flyrecon.deferred
    from flyrecon.engine import import_ptychi

    import_ptychi()

    def no_stand_ins(*args: object) -> None:
        raise AssertionError("placeholders installed although pty-chi is loaded")

    monkeypatch.setattr(flyrecon.deferred, "stand_ins", no_stand_ins)
    import_ptychi()  # called before every pty-chi use: must return at once
