"""The exact-match response cache: an executor wrapper, its backends and its settings."""
