"""A simulated Doris FE: MySQL protocol with Doris's columns, statements and error texts.

The pieces live in :mod:`doris_sim.model` (cluster state, clock), :mod:`doris_sim.sql` (statements,
errors) and :mod:`doris_sim.server` (the MySQL server); this module keeps their public names in one
place. ``python -m doris_sim.fe --port 9030 --version 2.1.8`` serves a standalone FE.
"""

from __future__ import annotations

from .model import Clock, ManualClock, Result, SimCluster, SimSqlError, SystemClock, VersionProfile
from .server import SimFeServer, main

__all__ = [
    "Clock",
    "ManualClock",
    "Result",
    "SimCluster",
    "SimFeServer",
    "SimSqlError",
    "SystemClock",
    "VersionProfile",
    "main",
]

if __name__ == "__main__":
    main()
