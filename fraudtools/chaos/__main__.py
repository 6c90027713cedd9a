"""``python -m fraudtools.chaos``: see :mod:`fraudtools.chaos`."""

from fraudtools.chaos.cli import main

raise SystemExit(main())
