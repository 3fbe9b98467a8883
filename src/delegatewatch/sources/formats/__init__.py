"""Source families beyond the unified audit log. Each module here defines ``READERS`` (see
``delegatewatch.sources.registry``) and is picked up automatically."""
