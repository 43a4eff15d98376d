"""User plug-ins: modules or ``.py`` files that register methods, datasets or backbones.

Named in the config key ``plugins`` (imported before anything is built) or installed as
packages declaring an entry point in the group ``ccreid.plugins`` (imported on first use
of a config). What fast-reid's ``projects/`` gives its users, without editing ccreid.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ccreid.errors import CCReIDError, first_line
from ccreid.files import require_file

ENTRY_POINT_GROUP = "ccreid.plugins"
_entry_points_loaded = False


def _import_file(path: Path) -> None:
    name = f"ccreid_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _exited(what: str, err: SystemExit) -> CCReIDError:
    """``sys.exit()`` in a plug-in at import would end ccreid silently, even with status 0."""
    return CCReIDError(f"{what} called sys.exit({err.code!r}) while being imported; a plug-in must only define "
                       "and register things: remove that call")


def _failed(what: str, err: BaseException) -> CCReIDError:
    """One line for a plug-in whose import raised: the error and the file and line that raised it."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<frozen")]
    place = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return CCReIDError(f"{what} failed ({type(err).__name__}: {first_line(err)}){place}")


def import_plugins(names: Sequence[str]) -> List[str]:
    """Import every plug-in (files by absolute path, once) and the installed entry points;
    returns ``names`` with file paths made absolute (what a run's config records)."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                point.load()
            except SystemExit as err:
                raise _exited(f"plug-in entry point {point.name} ({point.value}, group {ENTRY_POINT_GROUP})", err)
            except Exception as err:  # an installed package's code: any error, one line
                raise _failed(f"plug-in entry point {point.name} ({point.value}, group {ENTRY_POINT_GROUP}): "
                              "importing it", err) from None
    resolved = []
    for name in names:
        is_file = name.endswith(".py")
        target = str(Path(name).expanduser().resolve()) if is_file else name
        if is_file:
            require_file(target, "config key 'plugins': file", "list modules or existing .py files")
        try:
            if is_file:
                _import_file(Path(target))
            else:
                importlib.import_module(name)
        except CCReIDError:
            raise
        except SystemExit as err:
            raise _exited(f"config key 'plugins': {target}", err)
        except ModuleNotFoundError as err:
            if is_file or err.name != name.split(".")[0]:
                raise CCReIDError(f"config key 'plugins': importing {name} failed ({err})")
            raise CCReIDError(f"config key 'plugins': no module {name!r} (a module name on the path or a .py file)")
        except Exception as err:
            raise _failed(f"config key 'plugins': importing {name}", err) from None
        resolved.append(target)
    return resolved


def _source_file(name: str) -> Optional[Path]:
    """The file a plug-in was imported from: the ``.py`` path, or an importable module's origin."""
    if name.endswith(".py"):
        return Path(name)
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else None


def plugin_hashes(names: Sequence[str]) -> Dict[str, str]:
    """SHA-256 of each plug-in's source file (what ``--resume`` compares with the run's start)."""
    files = {name: _source_file(name) for name in names}
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()
            if path is not None and path.is_file()}


def module_name(path: Path) -> Optional[str]:
    """The name under which the plug-in file ``path`` is importable as a module from ``sys.path``
    (e.g. an installed package's file), or None."""
    path = path.resolve()
    for entry in sys.path:
        root = Path(entry or ".").resolve()
        if root in path.parents:
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                continue
            if spec is not None and spec.origin and Path(spec.origin).resolve() == path:
                return name
    return None


def plugin_modules(names: Sequence[str]) -> Dict[str, str]:
    """Each plug-in file of ``names`` -> the module name it is importable as (recorded with the
    weights, so a checkpoint finds its plug-in by module name when the file has moved)."""
    found = {name: module_name(Path(name)) for name in names if name.endswith(".py")}
    return {name: module for name, module in found.items() if module}


def moved_plugins(names: Sequence[str], modules: Dict[str, str]) -> Optional[List[str]]:
    """``names`` with each plug-in file that no longer exists replaced by the module recorded for it
    in ``modules`` when that module is importable; None when nothing is replaced."""
    replaced = list(names)
    for i, name in enumerate(names):
        module = modules.get(name)
        if name.endswith(".py") and not Path(name).is_file() and module:
            try:
                importable = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                importable = False
            replaced[i] = module if importable else name
    return replaced if replaced != list(names) else None
