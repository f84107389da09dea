"""Runs: the flags, the one epoch driver and the body of every script, checkpoints, the run
folder (log, TensorBoard, results.json), its lock, signals, resume, schedules, and the training
of an evaluation network."""
