"""Detections: Sigma rules (``rules/*.yml``), compiled to DuckDB SQL by a pySigma backend."""
