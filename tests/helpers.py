"""Re-exports of tests/conftest.py for the test modules that still import this module; to be
removed when the remaining importers move to fixtures (``save_untrained_depth_model`` and
``write_true_depth_hints`` are fixtures of those names)."""
from conftest import save_untrained_depth_model, write_true_depth_hints  # noqa: F401
