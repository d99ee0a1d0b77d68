"""Simulated Doris processes for tests and demos (see :mod:`doris_operator.sim.fe`)."""
