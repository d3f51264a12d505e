"""Makes ``tools`` importable for every test suite under tests/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
