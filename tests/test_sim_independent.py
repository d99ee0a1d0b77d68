"""The simulator shares no code with the operator: no import of doris_operator anywhere in sim/, no
import reaching outside its package, and importing and running it loads no operator module."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SIM = Path(__file__).resolve().parents[1] / "sim"


def test_no_module_of_the_simulator_imports_the_operator_or_reaches_outside_its_package() -> None:
    offenders = []
    for path in sorted((SIM / "doris_sim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (
                node.level > 1 or (node.module or "").startswith("doris_operator")
            ):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name.startswith("doris_operator") for a in node.names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_the_simulator_runs_without_the_operator_on_the_path() -> None:
    code = (
        "import sys, doris_sim.fe, doris_sim.images, doris_sim.sql, doris_sim.server, doris_sim.be_http\n"
        "from doris_sim.fe import SimCluster\n"
        "c = SimCluster()\n"
        "c.register_backend('h', 9050)\n"
        "assert c.execute('SHOW BACKENDS').rows\n"
        "assert not [m for m in sys.modules if m.startswith('doris_operator')], 'operator imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(SIM)}
    # Only sim/ on PYTHONPATH; should the operator still be importable (an editable install), the
    # sys.modules check shows whether the simulator pulled it in.
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
