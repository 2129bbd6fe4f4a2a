"""``python -m lstmcore``: the command line."""

import sys

from lstmcore.cli import main

sys.exit(main())
