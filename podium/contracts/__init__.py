"""Behaviour contracts: named tasks with input/output schemas, instructions and policy."""
