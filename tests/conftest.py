"""Suite-wide settings."""

from __future__ import annotations

import os

# A local Ray cluster started by a test must listen on 127.0.0.1 only; Ray
# reads this when its modules are imported, so it is set before any test
# module imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
