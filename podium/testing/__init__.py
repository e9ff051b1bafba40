"""Fakes shipped with Podium: upstream servers that speak each vendor's wire protocol, for
tests (Podium's and yours) that must not reach a real vendor."""
