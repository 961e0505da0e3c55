"""The ``hub`` command: Django's manage.py for this project (``hub serve``, ``hub worker``,
``hub seed sandbox --json``, ``hub bench NAME``, ``hub migrate`` ...), plus
``hub audit verify BUNDLE.json``, which checks a receipt bundle offline without Django."""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["audit", "verify"]:
        # An auditor runs this on a machine with no hub: no settings, no database.
        from hub.transparency.verify_cli import main as audit_verify

        sys.exit(audit_verify(argv[2:]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], *argv])


if __name__ == "__main__":
    main()
