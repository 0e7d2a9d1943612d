"""`python -m stackctl.demo` (what `make demo` runs): see run.py."""

import sys

from stackctl.demo.run import main

# Line by line even into a pipe: a CI log then keeps each summary (stdout) in order with the
# progress lines (stderr) around it.
sys.stdout.reconfigure(line_buffering=True)
sys.exit(main())
