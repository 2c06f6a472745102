"""The engine: the training loop with checkpoints and resume, evaluation on episodes, data parallelism, metrics."""
