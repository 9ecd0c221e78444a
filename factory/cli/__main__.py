"""`python -m factory.cli`: the same command line as the `factory` script."""

import sys

from factory.cli.app import main

sys.exit(main())
