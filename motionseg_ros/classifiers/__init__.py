"""classifiers backends: one module per backend, registered by name (see registry)."""
