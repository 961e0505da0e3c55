"""Discovery of installed adapters through the ``hub.adapters`` entry-point group.

Discovery is not activation: an installed adapter does nothing until an operator enables it for a
participant with its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def installed_adapters() -> dict[str, InstalledAdapter]:
    """Every adapter installed in this environment, by name."""
    found: dict[str, InstalledAdapter] = {}
    for entry in entry_points(group=GROUP):
        if entry.name in found:
            raise AdapterMisconfigured(
                f"two installed packages both provide the adapter {entry.name!r}"
            )
        found[entry.name] = _load(entry)
    return dict(sorted(found.items()))


def get_adapter(name: str) -> InstalledAdapter:
    adapters = installed_adapters()
    if name not in adapters:
        raise AdapterMisconfigured(
            f"no installed adapter is named {name!r}; installed: {', '.join(adapters) or 'none'}"
        )
    return adapters[name]
