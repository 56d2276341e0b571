"""The lab: what proves the product without being it. The offline simulator, its baselines
and traces, the twin's model and the load twin. It may import the core; the core and the
controllers never import it (an import-linter contract)."""
