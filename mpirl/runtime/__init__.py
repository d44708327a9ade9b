"""What a running job needs around its training loops: exit codes, stop signals, fault
injection, the per-rank stopwatch, thread limits, SLURM facts and the named random streams."""
