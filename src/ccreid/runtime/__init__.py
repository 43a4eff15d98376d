"""What every command runs on, below training and inference: devices, mixed precision,
processes (distributed), atomic writes. Imports nothing of ccreid but :mod:`ccreid.errors`."""
