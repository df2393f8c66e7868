"""The MLflow record of a sweep: its store, its writer thread and its recorder callback."""
