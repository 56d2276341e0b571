"""Tierra: a Kubernetes operator for heterogeneous inference fleets."""

__version__ = "0.1.0"
