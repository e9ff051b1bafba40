"""Deciding which workers answer a request, and how."""
