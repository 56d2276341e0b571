"""Test support for Tierra: builders shared by the unit tests, the cluster tests and the
benchmarks.

Not part of the product: ``tierra`` never imports it (an import-linter contract), and the
product's wheel leaves it out; it is importable in a development install (``pip install -e``),
whose path entry is the ``operator/`` source root.
"""
