"""Entry point of ``python -m cxr``."""

import sys

from cxr.cli import main

sys.exit(main())
