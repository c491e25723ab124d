"""Re-exports of tests/conftest.py for the test modules that still import this module; to be
removed when the remaining importers move to fixtures (``rel_kit`` holds these constants and
helpers; ``run_data``, ``depth_model`` and ``eval_splits`` are conftest fixtures, and the
hints that ``run_data`` copies are the ``hints_dir`` fixture)."""
from conftest import (D1, D2, ROOT, assert_one_line_error, error_lines, hint, image,  # noqa: F401
                      make_trainer, run_script, train_args, write_garbage_jpeg, write_nan_hint)
from conftest import eval_args as _eval_args, train_opt as _opt  # noqa: F401
from conftest import depth_model, eval_splits, run_data  # noqa: F401 (fixtures)
from conftest import hints_dir as hints_src  # noqa: F401 (fixture; named hints_dir there)
