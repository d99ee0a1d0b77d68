"""The operator image, without a container engine: (a) the Dockerfile is linted against the rules the image
must keep (small, non-root, read-only-root friendly, pinned), and (b) what it does (a wheel of this checkout
installed with its dependencies into a fresh venv) yields a working ``doris-operator`` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from doris_operator.api import crdgen

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# ---- a small Dockerfile parser ---------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` flags (COPY --from=..., RUN --mount=...) and the rest."""
        out: dict[str, str] = {}
        rest = self.args
        while (m := re.match(r"--([a-z-]+)(?:=(\S+))?\s*", rest)) is not None:
            out[m.group(1)] = m.group(2) or ""
            rest = rest[m.end() :]
        return out, rest


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    """Global ARGs (before the first FROM) and their defaults."""
    stages: list[Stage]


def parse(text: str) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped; ARG defaults substituted in
    FROM.  Heredocs are not supported (and not used)."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    if pending:
        raise ValueError("the Dockerfile ends inside a continued line")

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            _, rest = ins.flags()
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image, name, ins.line))
        elif not stages:
            if ins.keyword != "ARG":
                raise ValueError(f"line {ins.line}: only ARG may come before the first FROM")
            key, _, default = ins.args.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(ins)
    return Dockerfile(global_args, stages)


def _pinned(image: str, stage_names: set[str]) -> str | None:
    """Why a base image isn't pinned, or None."""
    if image in stage_names:
        return None
    if "$" in image:
        return f"{image}: unresolved variable"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    if not tag:
        return f"{image}: no tag (means latest)"
    if tag == "latest" or not re.search(r"\d+\.\d+", tag):
        return f"{image}: tag {tag!r} is not a version"
    return None


def lint(text: str) -> list[str]:
    """Every broken rule, one line each; [] for a good Dockerfile."""
    problems: list[str] = []
    df = parse(text)
    if len(df.stages) < 2:
        problems.append("not multi-stage: build in one stage, copy the result into a slim runtime")
    if not df.stages:
        return problems
    names = {s.name for s in df.stages if s.name}
    if re.search(r":latest\b", text):
        problems.append("a 'latest' tag")
    for stage in df.stages:
        why = _pinned(stage.image, names)
        if why:
            problems.append(f"line {stage.line}: base image not pinned: {why}")
        for ins in stage.instructions:
            if ins.keyword == "ADD" and re.search(r"\b(https?|git)://|git@", ins.args):
                problems.append(f"line {ins.line}: ADD of a URL (download in a RUN with a checksum)")
            if ins.keyword == "RUN" and re.search(r"\bapt(-get)?\s+(\S+\s+)*install\b", ins.args):
                if "--no-install-recommends" not in ins.args:
                    problems.append(f"line {ins.line}: apt install without --no-install-recommends")
                if not re.search(r"rm -rf /var/lib/apt/lists/(\*|\s)", ins.args):
                    problems.append(f"line {ins.line}: apt lists not removed in the same RUN")
            if ins.keyword != "ARG":
                for var in re.findall(r"\$\{?(\w+)", ins.args):
                    declared = any(
                        a.args.partition("=")[0].strip() == var for a in stage.all("ARG") if a.line < ins.line
                    )
                    if var in df.args and not declared:
                        problems.append(
                            f"line {ins.line}: global ARG {var} used without ARG {var} in the stage (empty)"
                        )
            if ins.keyword == "MAINTAINER":
                problems.append(f"line {ins.line}: MAINTAINER is deprecated (use a LABEL)")

    final = df.stages[-1]
    users = final.all("USER")
    if not users:
        problems.append("the final stage has no USER: it would run as root")
    else:
        user = users[-1].args.split(":")
        if not all(part.isdigit() for part in user):
            problems.append(f"USER {users[-1].args}: not numeric (runAsNonRoot needs a numeric uid)")
        elif int(user[0]) == 0:
            problems.append("USER 0: root")
    entrypoints = final.all("ENTRYPOINT")
    if not entrypoints:
        problems.append("no ENTRYPOINT in the final stage")
    elif entrypoints[-1].exec_form() is None:
        problems.append(f"line {entrypoints[-1].line}: ENTRYPOINT not in exec form (a JSON array)")
    for cmd in final.all("CMD"):
        if cmd.exec_form() is None:
            problems.append(f"line {cmd.line}: CMD not in exec form")
    for check in final.all("HEALTHCHECK"):
        flags, rest = check.flags()
        if rest.upper() == "NONE":
            continue
        unknown = set(flags) - {"interval", "timeout", "start-period", "start-interval", "retries"}
        head, _, command = rest.partition(" ")
        if unknown or head.upper() != "CMD" or not command:
            problems.append(f"line {check.line}: HEALTHCHECK must be NONE or CMD with known options")
    return problems


# ---- (a) the Dockerfile ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text())


def test_dockerfile_passes_the_lint() -> None:
    assert lint(DOCKERFILE.read_text()) == []


def test_builder_stage_builds_a_wheel_and_a_venv(dockerfile: Dockerfile) -> None:
    builder = dockerfile.stages[0]
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert "pip wheel --no-deps" in runs
    assert "-m venv /opt/venv" in runs
    final = dockerfile.stages[-1]
    copies = [i.flags() for i in final.all("COPY")]
    assert ({"from": builder.name or "0"}, "/opt/venv /opt/venv") in copies
    assert not final.all("RUN"), "the runtime stage needs no RUN (and no shell)"


def test_runtime_is_a_pinned_slim_python_311(dockerfile: Dockerfile) -> None:
    image = dockerfile.stages[-1].image
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    assert dockerfile.stages[0].image == image  # the venv's interpreter paths match the runtime's


def test_runtime_settings(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    env = " ".join(i.args for i in final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    assert re.search(r"PATH=/opt/venv/bin:", env)
    assert final.all("USER")[-1].args in ("65532", "65532:65532")
    assert final.all("ENTRYPOINT")[-1].exec_form() == ["doris-operator"]
    assert final.all("CMD")[-1].exec_form() == ["run"]
    assert sorted(" ".join(i.args for i in final.all("EXPOSE")).split()) == ["8080", "9443"]
    labels = " ".join(i.args for i in final.all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}" in DOCKERFILE.read_text(), "the image version follows pyproject.toml"


def test_dockerignore_keeps_the_context_small(dockerfile: Dockerfile) -> None:
    lines = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what the build copies"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            flags, rest = copy.flags()
            if "from" in flags:
                continue
            *sources, _dest = rest.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
                assert (ROOT / source).exists(), source


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('FROM python:3.11.11-slim\nENTRYPOINT ["x"]\n', "not multi-stage"),
        ('FROM python:latest AS b\nFROM python:3.11.11-slim\nUSER 1\nENTRYPOINT ["x"]\n', "latest"),
        ('FROM python AS b\nFROM python:3.11.11-slim\nUSER 1\nENTRYPOINT ["x"]\n', "no tag"),
        ('FROM a:1.2 AS b\nFROM python:3.11.11-slim\nENTRYPOINT ["x"]\n', "no USER"),
        ('FROM a:1.2 AS b\nFROM python:3.11.11-slim\nUSER app\nENTRYPOINT ["x"]\n', "not numeric"),
        ('FROM a:1.2 AS b\nFROM python:3.11.11-slim\nUSER 0:0\nENTRYPOINT ["x"]\n', "root"),
        ("FROM a:1.2 AS b\nFROM python:3.11.11-slim\nUSER 1\nENTRYPOINT x run\n", "exec form"),
        (
            "FROM a:1.2 AS b\nADD https://example.com/x.tgz /x\nFROM python:3.11.11-slim\nUSER 1\n"
            'ENTRYPOINT ["x"]\n',
            "ADD of a URL",
        ),
        (
            "FROM a:1.2 AS b\nRUN apt-get update && \\\n    apt-get install -y --no-install-recommends curl\n"
            'FROM python:3.11.11-slim\nUSER 1\nENTRYPOINT ["x"]\n',
            "apt lists",
        ),
        (
            "FROM a:1.2 AS b\nFROM python:3.11.11-slim\nUSER 1\nHEALTHCHECK --bogus=1 CMD true\n"
            'ENTRYPOINT ["x"]\n',
            "HEALTHCHECK",
        ),
        ('ARG IMG=python:3.11\nFROM $IMG AS b\nFROM ${IMG}-slim\nUSER 1\nENTRYPOINT ["x"]\n', ""),
        (
            'ARG IMG=python:3.11\nFROM $IMG AS b\nFROM ${IMG}-slim\nLABEL a="${IMG}"\nUSER 1\n'
            'ENTRYPOINT ["x"]\n',
            "global ARG IMG",
        ),
        (
            'ARG IMG=python:3.11\nFROM $IMG AS b\nFROM ${IMG}-slim\nARG IMG\nLABEL a="${IMG}"\nUSER 1\n'
            'ENTRYPOINT ["x"]\n',
            "",
        ),
    ],
)
def test_lint_catches_broken_rules(text: str, problem: str) -> None:
    problems = lint(text)
    if problem:
        assert any(problem in p for p in problems), problems
    else:
        assert problems == [], problems


def test_parser_joins_continuations_and_substitutes_args() -> None:
    df = parse("ARG B=python:3.11.11-slim\n# c\nFROM ${B} AS builder\nRUN a \\\n  # inner\n  && b\n")
    assert df.stages[0].image == "python:3.11.11-slim" and df.stages[0].name == "builder"
    assert df.stages[0].instructions == [Instruction("RUN", "a && b", 4)]


# ---- (b) the entrypoint from a clean virtualenv ---------------------------------------------------------

WHEEL_CACHE = (
    Path(os.environ.get("DORIS_OPERATOR_CACHE") or Path.home() / ".cache" / "doris-operator") / "wheels"
)
"""Wheels of the dependencies, filled from PyPI on first use (like the control plane's binaries)."""


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def _pip(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "pip", "--disable-pip-version-check", *args, cwd=cwd)


def _fill_cache(cwd: Path) -> None:
    """The project's dependencies and build requirements as files in the wheel cache, from PyPI."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*project["build-system"]["requires"], *project["project"]["dependencies"]]
    done = _pip("download", "--quiet", "--dest", WHEEL_CACHE, *requirements, cwd=cwd)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(300)
def test_entrypoint_runs_from_a_clean_virtualenv(tmp_path: Path) -> None:
    """As the Dockerfile does: ``pip wheel --no-deps .``, install that wheel with its dependencies into a
    new venv (from the wheel cache; PyPI fills it on first use), then run the console script."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    offline = ("--no-index", "--find-links", str(WHEEL_CACHE))

    def build_and_install() -> subprocess.CompletedProcess[str]:
        for old in dist.glob("*.whl"):
            old.unlink()
        built = _pip("wheel", "--quiet", "--no-deps", *offline, "--wheel-dir", dist, ROOT, cwd=tmp_path)
        if built.returncode != 0:
            return built
        wheels = list(dist.glob("doris_operator-*.whl"))
        assert len(wheels) == 1, wheels
        return _pip(
            "--python", venv / "bin" / "python", "install", "--quiet", *offline, wheels[0], cwd=tmp_path
        )

    created = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    installed = build_and_install()
    if installed.returncode != 0:  # something is not in the cache yet
        _fill_cache(tmp_path)
        installed = build_and_install()
    assert installed.returncode == 0, installed.stderr

    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    exe = venv / "bin" / "doris-operator"

    where = _run(venv / "bin" / "python", "-c", "import doris_operator; print(doris_operator.__file__)",
                 cwd=tmp_path, env=env)  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), "imported from the checkout, not the venv"

    helped = _run(exe, "--help", cwd=tmp_path, env=env)
    assert helped.returncode == 0, helped.stderr
    for command in ("render", "run", "crds", "webhook"):
        assert command in helped.stdout

    crds = _run(exe, "crds", cwd=tmp_path, env=env)
    assert crds.returncode == 0, crds.stderr
    docs = [d for d in yaml.safe_load_all(crds.stdout) if d]
    assert {d["kind"] for d in docs} == {"CustomResourceDefinition"}
    assert docs == crdgen.all_crds()

    rendered = _run(
        exe, "render", "-f", ROOT / "examples" / "doriscluster-sample.yaml", cwd=tmp_path, env=env
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("StatefulSet", "doriscluster-sample-fe") in kinds
    assert ("StatefulSet", "doriscluster-sample-be") in kinds
    assert ("Service", "doriscluster-sample-fe-service") in kinds

    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: doris.selectdb.com/v1\nkind: DorisCluster\nmetadata: {name: x}\nspec: {}\n")
    refused = _run(exe, "render", "-f", bad, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "spec" in refused.stderr + refused.stdout
