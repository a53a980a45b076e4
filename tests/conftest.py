import os

# Tests run on CPU with deterministic settings; no network, no GPU needed.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
