"""Training: builds a run from the flags (data, model, loss, solver) and runs it with checkpoints."""
