"""Shared pytest configuration."""

import sys
from pathlib import Path

# With --import-mode=importlib test directories are not put on sys.path; shared helpers are
# imported as `integration.harness` and `integration.rawclient` from the tests directory.
sys.path.insert(0, str(Path(__file__).parent))
