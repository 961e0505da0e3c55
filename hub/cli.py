"""The ``hub`` command: Django's manage.py for this project (``hub serve``, ``hub worker``,
``hub seed sandbox --json``, ``hub bench NAME``, ``hub migrate`` ...)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], *sys.argv[1:]])


if __name__ == "__main__":
    main()
