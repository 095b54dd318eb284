"""The run side: matrix files, cells, the runner and its workers, executors, the result store,
timing, tuning."""
