"""What a run folder holds, read and written: weights and training checkpoints, the log
(metrics.jsonl), results.json / results.md, feature files and search indexes, and where a
command may write (the run lock, no results overwritten)."""
