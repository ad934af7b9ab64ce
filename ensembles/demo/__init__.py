"""The paper in miniature on the MNIST-1D transfer target (``landscape demo``), with replicates,
a sweep of cycle rates chosen on a validation split, and every claim as an effect with its
interval (``ensembles.claims``). ``steps`` runs it, ``read`` reads a demo directory back."""

from ensembles.demo.config import PLANE_ROLES, REGIMES, ROLES, DemoConfig, role_runs
from ensembles.demo.read import DemoResults, read_demo, read_ensembles, read_pairs
from ensembles.demo.steps import run_demo

__all__ = ["PLANE_ROLES", "REGIMES", "ROLES", "DemoConfig", "DemoResults", "read_demo", "read_ensembles",
           "read_pairs", "role_runs", "run_demo"]
