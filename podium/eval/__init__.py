"""Evaluation of routers and workers: offline (RouterBench-format data)."""
