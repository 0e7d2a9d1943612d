"""`python -m stackctl.demo` (what `make demo` runs): see run.py."""

import sys

from .run import main

sys.exit(main())
