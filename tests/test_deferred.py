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


def test_a_placeholder_can_sit_under_a_real_parent_package(packages: Path) -> None:
    import builtins

    import heavypkg  # the real package, without its submodule

    with stand_ins({"heavypkg.sub": ("double",)}):
        import consumer
    assert consumer.heavypkg is heavypkg and getattr(builtins, "heavypkg_loads", 0) == 0
    assert consumer.double(2) == 4 and type(consumer.make()).__module__ == "heavypkg.sub"
    assert builtins.heavypkg_loads == 1
    assert not isinstance(heavypkg.sub, DeferredModule)  # the real module replaced it


def test_a_lazy_real_parent_loses_the_placeholder_when_the_body_ends(packages: Path) -> None:
    (packages / "heavypkg" / "__init__.py").write_text(
        "import importlib\n"
        "def __getattr__(name):\n"
        "    return importlib.import_module(f'heavypkg.{name}')\n"
    )
    import heavypkg

    with stand_ins({"heavypkg.sub": ()}):
        assert isinstance(heavypkg.sub, DeferredModule)
    assert "sub" not in vars(heavypkg)
    assert heavypkg.sub.double(3) == 6  # scipy-style lazy loading gives the real module


def test_placeholders_leave_even_when_the_import_fails(packages: Path) -> None:
    (packages / "broken.py").write_text("import heavypkg.sub\nraise RuntimeError('no')\n")
    with pytest.raises(RuntimeError), stand_ins({"heavypkg.sub": ()}):
        import broken  # noqa: F401
    assert "heavypkg" not in sys.modules and "heavypkg.sub" not in sys.modules
    sys.modules.pop("broken", None)


def _run_python(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")


def test_ptychi_loads_without_what_it_seldom_uses_and_still_gets_it() -> None:
    lines = _run_python(
        """
        import sys
        from flyrecon.engine import import_ptychi
        import_ptychi()
        deferred = ("torchvision", "sklearn", "scipy.spatial")
        print(sorted(m for m in deferred if m in sys.modules))
        import ptychi.io_handles, ptychi.utils
        print(type(ptychi.utils.GaussianBlur(3)).__module__)
        print(ptychi.io_handles.sklearn.cluster.KMeans.__module__)
        print(ptychi.io_handles.scipy.spatial.distance.cdist.__module__)
        import sklearn.cluster, torchvision, scipy.spatial
        print(sklearn.cluster.KMeans is ptychi.io_handles.sklearn.cluster.KMeans)
        print(type(sys.modules["scipy.spatial"]).__name__)
        """
    )
    assert lines[0] == "[]"
    assert lines[1].startswith("torchvision.transforms")
    assert lines[2].startswith("sklearn.cluster")
    assert lines[3].startswith("scipy.spatial")
    assert lines[4] == "True"
    assert lines[5] == "module"


def test_import_ptychi_installs_nothing_once_ptychi_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flyrecon.engine
    from flyrecon.engine import import_ptychi

    import_ptychi()

    def no_stand_ins(*args: object) -> None:
        raise AssertionError("placeholders installed although pty-chi is loaded")

    monkeypatch.setattr(flyrecon.engine, "stand_ins", no_stand_ins)
    import_ptychi()  # called before every pty-chi use: must return at once


def test_optimizers_step_without_torch_dynamo_and_torch_is_whole_afterwards() -> None:
    lines = _run_python(
        """
        import sys, torch
        from torch.optim import Optimizer
        from flyrecon.deferred import eager_dynamo
        p = torch.nn.Parameter(torch.ones(3))
        with eager_dynamo():
            opt = torch.optim.SGD([p], lr=0.5)
            for _ in range(2):
                p.grad = torch.ones(3)
                opt.step()
                opt.zero_grad()
            print(type(sys.modules["torch._dynamo"]).__name__)
        print("torch._dynamo" in sys.modules, "_dynamo" in vars(torch))
        print(p.detach().tolist())
        cached = vars(Optimizer.add_param_group.__wrapped__).get("__dynamo_disable")
        print(cached is None)
        import torch._dynamo
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))]})
        p.grad = torch.ones(3)
        opt.step()
        fn = Optimizer.add_param_group.__wrapped__
        print(hasattr(torch._dynamo, "optimize"), vars(fn)["__dynamo_disable"] is not fn)
        """
    )
    assert lines[0] == "_EagerDynamo"
    assert lines[1] == "False False"  # never imported, and nothing of the stand-in left
    assert lines[2] == "[0.0, 0.0, 0.0]"  # two SGD steps of 0.5
    assert lines[3] == "True"  # torch's cache of the stand-in's `disable` undone
    assert lines[4] == "True True"  # later the real module, wrapping as usual


def test_anything_else_of_torch_dynamo_loads_the_real_module() -> None:
    lines = _run_python(
        """
        import sys, torch
        from flyrecon.deferred import eager_dynamo
        with eager_dynamo():
            stand_in = sys.modules["torch._dynamo"]
            print(stand_in.config.__name__)
            print(type(sys.modules["torch._dynamo"]).__name__)
        real = sys.modules["torch._dynamo"]
        print(type(real).__name__, torch._dynamo is real)
        """
    )
    assert lines[0] == "torch._dynamo.config"
    assert lines[1] == "module" and lines[2] == "module True"


def test_a_submodule_of_torch_dynamo_imports_under_the_stand_in() -> None:
    lines = _run_python(
        """
        import sys, torch
        from flyrecon.deferred import eager_dynamo
        with eager_dynamo():
            import torch._dynamo.config
            print(torch._dynamo.config.__name__, type(sys.modules["torch._dynamo"]).__name__)
        """
    )
    assert lines[0] == "torch._dynamo.config module"


def test_a_reconstruction_does_not_import_torch_dynamo(tiny_npz: Path, tmp_path: Path) -> None:
    lines = _run_python(
        f"""
        import sys
        from flyrecon.cli import main
        sys.argv = ["flyrecon", "reconstruct", "--input-npz", {str(tiny_npz)!r},
                    "--output-dir", {str(tmp_path / "out")!r}, "--num-epochs", "3",
                    "--device", "cpu"]
        try:
            main()
        except SystemExit as exc:
            print("exit", exc.code)
        print("torch._dynamo" in sys.modules)
        """
    )
    assert lines[-3:] == ["exit 0", "False", ""], lines
