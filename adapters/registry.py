"""Discovery of installed adapters through the ``hub.adapters`` entry-point group.

Discovery is not activation: an installed adapter does nothing until an operator enables it for a
participant with its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from adapters.capabilities import Adapter
from adapters.errors import AdapterMisconfigured

GROUP = "hub.adapters"


@dataclass(frozen=True)
class InstalledAdapter:
    name: str
    adapter_class: type[Adapter]
    distribution: str


def _load(entry: EntryPoint) -> InstalledAdapter:
    loaded = entry.load()
    if not (isinstance(loaded, type) and issubclass(loaded, Adapter)):
        raise AdapterMisconfigured(f"entry point {entry.name!r} does not name an Adapter subclass")
    if loaded.manifest.name != entry.name:
        raise AdapterMisconfigured(
            f"entry point {entry.name!r} loads an adapter whose manifest is named "
            f"{loaded.manifest.name!r}"
        )
    dist = entry.dist.name if entry.dist is not None else "?"
    return InstalledAdapter(entry.name, loaded, dist)


@cache
def _scan() -> tuple[tuple[str, InstalledAdapter], ...]:
    # Once per process: the installed distributions do not change under a running hub, and
    # reading entry points costs milliseconds on every call that needs an adapter.
    found: dict[str, InstalledAdapter] = {}
    for entry in entry_points(group=GROUP):
        if entry.name in found:
            raise AdapterMisconfigured(
                f"two installed packages both provide the adapter {entry.name!r}"
            )
        found[entry.name] = _load(entry)
    return tuple(sorted(found.items()))


def installed_adapters() -> dict[str, InstalledAdapter]:
    """Every adapter installed in this environment, by name."""
    return dict(_scan())


@cache
def get_adapter(name: str) -> InstalledAdapter:
    """Load only the adapter asked for, so that one broken package elsewhere does not stop
    every other institution's calls."""
    entries = [entry for entry in entry_points(group=GROUP) if entry.name == name]
    if not entries:
        names = sorted({entry.name for entry in entry_points(group=GROUP)})
        raise AdapterMisconfigured(
            f"no installed adapter is named {name!r}; installed: {', '.join(names) or 'none'}"
        )
    if len(entries) > 1:
        raise AdapterMisconfigured(f"two installed packages both provide the adapter {name!r}")
    return _load(entries[0])
