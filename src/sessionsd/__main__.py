"""``python -m sessionsd``: the command line (see :mod:`sessionsd.cli`)."""

import sys

from .cli import main

sys.exit(main())
