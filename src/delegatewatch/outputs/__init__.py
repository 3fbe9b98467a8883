"""Outputs: findings as a console table, JSON lines or CSV."""
