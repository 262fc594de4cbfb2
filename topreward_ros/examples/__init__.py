"""Example consumers of the scorer node's topics (installed as executables)."""
