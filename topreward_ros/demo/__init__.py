"""The demo and its synthetic data: a drawn scene, bags and LeRobot datasets made from it.

``make demo`` runs ``python -m topreward_ros.demo`` (``run.py``). The same
scene feeds the synthetic bags (``synthetic_bag``) and datasets
(``synthetic_lerobot``) that the tests and benchmarks score, because real
robot recordings cannot ship with the repository.
"""
