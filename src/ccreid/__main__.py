"""``python -m ccreid`` (also what ``torchrun -m ccreid`` runs)."""

import sys

from ccreid.cli import main

sys.exit(main())
