"""Outputs: findings as a console table, JSON lines, CSV, OCSF or the HTML report; OCSF events and the
event lake (``export-events``)."""
