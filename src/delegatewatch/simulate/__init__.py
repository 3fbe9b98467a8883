"""A simulated tenant with labelled T1098.002 attack chains (``delegatewatch simulate``; docs/simulate.md).

``tenant`` (people and habits) → ``background`` (an organisation's ordinary activity, an hour at a time)
and ``scenarios`` (the attacks, labelled) → ``writers/`` (one module per export format, sharing
``writers/base``) → ``labels`` (ground truth); ``run`` ties them together.
"""
