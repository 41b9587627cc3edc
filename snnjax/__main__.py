"""``python -m snnjax``: the same as the ``snnjax`` command."""

import sys

from snnjax.cli import main

sys.exit(main())
