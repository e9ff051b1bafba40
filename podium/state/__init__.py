"""State shared by gateway replicas: the worker pool's run-time changes (through the store) and
circuit-breaker state (through Redis)."""
