"""``python -m m4t ...``: the same as the ``m4t`` console script."""

from m4t.cli import main

raise SystemExit(main())
