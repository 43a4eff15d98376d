"""Training, evaluation and checkpoints: the glue between data, models, losses and metrics."""
