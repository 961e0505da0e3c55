"""The pytest plugin of the conformance kit: ``--adapter NAME`` (repeatable) chooses the installed
adapters to test, and every check of the suite is parametrised by adapter name, a check marked
``@pytest.mark.capability(...)`` only for adapters whose manifest lists one of those capabilities.

    python -m pytest -p adapters.conformance.plugin adapters/conformance/suite.py --adapter bank

(``hub adapters conformance bank`` runs it so, in a subprocess: ``adapters.conformance.runner``.)
"""

from __future__ import annotations

import functools

import pytest

from adapters.errors import AdapterMisconfigured
from adapters.manifest import Capability
from adapters.registry import get_adapter


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hub-conformance", "hub adapter conformance kit")
    group.addoption(
        "--adapter",
        action="append",
        default=[],
        dest="conformance_adapters",
        metavar="NAME",
        help="an installed adapter (its hub.adapters entry-point name) to check; repeatable",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "capability(*capabilities): run the check for adapters that declare any of these",
    )


@functools.cache
def _capabilities(name: str) -> frozenset[Capability] | None:
    """The manifest's capabilities, or None when the adapter does not load (the manifest checks
    then report why)."""
    try:
        return get_adapter(name).adapter_class.manifest.capabilities
    except (AdapterMisconfigured, ImportError, AttributeError):
        return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "adapter_name" not in metafunc.fixturenames:
        return
    names: list[str] = list(dict.fromkeys(metafunc.config.getoption("conformance_adapters")))
    marker = metafunc.definition.get_closest_marker("capability")
    if marker is not None:
        wanted = frozenset(Capability(c) for c in marker.args)
        names = [n for n in names if (_capabilities(n) or frozenset()) & wanted]
    # Session scope: one sandbox per adapter for the whole run.
    metafunc.parametrize("adapter_name", names, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the checks of capabilities no chosen adapter has (rather than list them skipped)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        # An empty parameter set leaves a placeholder that is not a name.
        if callspec is not None and isinstance(callspec.params.get("adapter_name"), str):
            keep.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
