"""What a run leaves on disk: checkpoint files, the run directory, progress.csv and TensorBoard
events, and reading a run back to resume it."""
