"""`python -m lms` is the `lms` command."""

import sys

from lms.cli import main

sys.exit(main())
