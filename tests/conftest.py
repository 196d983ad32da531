"""Shared pytest configuration."""

import sys
from pathlib import Path

# Let tests import helpers from the tests package directories (tests/integration/harness.py).
sys.path.insert(0, str(Path(__file__).parent))
