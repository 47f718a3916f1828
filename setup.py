"""Build hook: a wheel carries reconciler-shim compiled for this source, so the hosts that
install it need no C compiler (see reconciler/executor/linux/shimbuild.py). Everything else
is in pyproject.toml."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithShim(build_py):
    def run(self) -> None:
        super().run()
        spec = importlib.util.spec_from_file_location(
            "shimbuild", HERE / "reconciler/executor/linux/shimbuild.py"
        )
        assert spec and spec.loader
        shimbuild = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(shimbuild)
        out = Path(self.build_lib) / "reconciler/executor/linux/bin"
        try:
            path, kind = shimbuild.build(out)
            print(f"reconciler-shim ({kind}): {path}")
        except shimbuild.ShimBuildError as e:  # the service then compiles on first use
            print(f"warning: reconciler-shim not built into the wheel: {e}", file=sys.stderr)


setup(cmdclass={"build_py": BuildWithShim})
