"""delegatewatch: find additional email delegate permissions (T1098.002) and their abuse."""

__version__ = "0.1.0"
