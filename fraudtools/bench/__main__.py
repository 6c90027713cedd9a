"""``python -m fraudtools.bench``: see :mod:`fraudtools.bench`."""

from fraudtools.bench.cli import main

raise SystemExit(main())
