"""Findings: one model for everything delegatewatch reports, built from rule matches and events."""
