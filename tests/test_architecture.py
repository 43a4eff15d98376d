"""docs/ARCHITECTURE.md states every file of the package: a new module without its line fails here."""

from __future__ import annotations

from pathlib import Path

import ccreid

PACKAGE = Path(ccreid.__file__).parent
PAGE = PACKAGE.parents[1] / "docs" / "ARCHITECTURE.md"


def test_every_module_is_named_in_architecture_md() -> None:
    text = PAGE.read_text()
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and "datasets" not in p.parts]
    assert modules and not [str(p.relative_to(PACKAGE)) for p in modules if p.name not in text]
    adapters = [p.stem for p in (PACKAGE / "data" / "datasets").glob("*.py") if p.stem != "__init__"]
    assert not [name for name in adapters if name not in text]
