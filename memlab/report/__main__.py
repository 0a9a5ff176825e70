"""``python -m memlab.report RUN_OR_SWEEP_DIR``: re-make the report of a finished run or sweep."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
