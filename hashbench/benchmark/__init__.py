"""Metrics, timing, the matrix runner, result store, executors, tables, figures, paper numbers."""
