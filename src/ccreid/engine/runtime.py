"""Kept only for :mod:`ccreid.config`'s choice list until its own change (no cycles through
config, issue 22 item 5) is merged: the code lives in :mod:`ccreid.runtime`."""

from ccreid.runtime.amp import AMP_MODES

__all__ = ["AMP_MODES"]
