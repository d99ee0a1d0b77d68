"""Simulated Doris processes for tests and demos (see :mod:`doris_sim.fe`)."""
