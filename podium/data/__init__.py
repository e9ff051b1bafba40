"""Small artifacts shipped with Podium (models, lists)."""
