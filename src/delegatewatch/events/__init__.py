"""Events: the typed model every source maps into, the rights vocabulary and principals."""
