"""Build a Go program from the Go module proxy with ``go install MODULE/PKG@VERSION``, cached.

The binaries land in ``${DORIS_OPERATOR_CACHE:-~/.cache/doris-operator}/<name>/<version>/bin`` with a
``build-info.json`` stamp; a file lock makes concurrent callers build once. Used for the tools the tests
need beside the control plane (metrics-server, ...); hack/localcluster.py builds the control plane itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster import cache_root, file_lock, go_binary


class GoToolError(RuntimeError):
    pass


@dataclass(frozen=True)
class GoTool:
    name: str
    """The cache folder's name."""
    version: str
    packages: tuple[str, ...]
    """``module/path/cmd/x`` of each program to install (all at ``version``)."""
    ldflags: str = "-s -w"
    format: int = 1
    """Bumped when the way it is built changes: a cached build of another format is rebuilt."""

    @property
    def dest(self) -> Path:
        return cache_root() / self.name / self.version

    def binary(self, program: str) -> Path:
        return self.dest / "bin" / program

    def _stamp(self) -> dict[str, object]:
        return {"version": self.version, "packages": list(self.packages), "format": self.format}

    def installed(self) -> bool:
        try:
            info = json.loads((self.dest / "build-info.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(info == self._stamp()) and all(
            self.binary(p.rsplit("/", 1)[-1]).is_file() for p in self.packages
        )

    def ensure(self, timeout: float = 2400) -> Path:
        """The bin folder, building into it first unless cached."""
        if not self.installed():
            with file_lock(self.dest.parent / f"{self.dest.name}.lock"):
                if not self.installed():
                    self._build(timeout)
        return self.dest / "bin"

    def _build(self, timeout: float) -> None:
        work = self.dest.parent / f"{self.dest.name}.partial"
        shutil.rmtree(work, ignore_errors=True)
        (work / "bin").mkdir(parents=True)
        env = dict(os.environ, GOTOOLCHAIN="local", GOBIN=str(work / "bin"))
        env.setdefault("CGO_ENABLED", "0")
        _log(self.name, f"building {self.name} {self.version} into {self.dest} (takes a few minutes)")
        for pkg in self.packages:
            _go(
                ["install", "-trimpath", f"-ldflags={self.ldflags}", f"{pkg}@{self.version}"],
                work,
                env,
                timeout,
            )
        (work / "build-info.json").write_text(json.dumps(self._stamp()))
        shutil.rmtree(self.dest, ignore_errors=True)
        work.rename(self.dest)
        _log(self.name, f"built {self.name} {self.version}: {self.dest / 'bin'}")


def _go(args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.run(
        [go_binary(args[-1]), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise GoToolError(f"go {' '.join(args)} failed:\n{proc.stderr[-4000:]}")


def _log(name: str, msg: str) -> None:
    print(f"[{name}] {msg}", file=sys.stderr, flush=True)


METRICS_SERVER = GoTool(
    "metrics-server",
    "v0.8.0",
    ("sigs.k8s.io/metrics-server/cmd/metrics-server",),
)


if __name__ == "__main__":
    tools = {"metrics-server": METRICS_SERVER}
    for arg in sys.argv[1:] or list(tools):
        print(tools[arg].ensure())
