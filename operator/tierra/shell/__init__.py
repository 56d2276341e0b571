"""I/O: member-cluster clients, informers, server-side apply, Prometheus queries."""
