"""Where tests keep model files they build or assemble once (outside the repo, reused across runs)."""

import os
from pathlib import Path

MODEL_CACHE = Path(os.environ.get("SLMCHAT_TEST_MODELS", Path.home() / ".cache" / "slmchat-test-models"))
