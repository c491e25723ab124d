"""What every tool shares: the error type and how a CLI reports it (one line, exit code 2),
and the input sizes the depth network takes. Files are fileio.py's, images image_io.py's."""
import sys


# The input sizes the depth network takes: multiples of 32 (the ResNet encoder halves the image five times and the
# decoder doubles it back) of at least 64 (the deepest, 1/32 feature map then has two pixels, the least the decoder's
# reflection padding needs), and at most 4096 a side (a network of that size no longer fits in memory).
INPUT_SIZE_MULTIPLE = 32
MIN_INPUT_SIZE = 64
MAX_INPUT_SIZE = 4096


def check_input_size(height, width, flag="--height/--width", what="input size",
                     fix="use e.g. 640x192 or 1024x320"):
    """ToolkitError naming ``flag`` unless height and width are multiples of 32 from 64 to 4096 (``what``: the name)."""
    if (height % INPUT_SIZE_MULTIPLE or width % INPUT_SIZE_MULTIPLE or min(height, width) < MIN_INPUT_SIZE
            or max(height, width) > MAX_INPUT_SIZE):
        raise ToolkitError(f"{what} {width}x{height} is not a multiple of {INPUT_SIZE_MULTIPLE} of at least "
                           f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} and at most {MAX_INPUT_SIZE} a side ({flag}): {fix}")


class ToolkitError(Exception):
    """A user-facing error, printed by CLIs as one line (exit code 2): ``<what> (<file or flag>): <how to fix>``."""


class MissingFileError(ToolkitError, FileNotFoundError):
    """A file or folder that does not exist (both a ToolkitError and a FileNotFoundError)."""


def run_cli(fn, *args, **kwargs):
    """Run a CLI's ``fn``: its int result is the exit code (else 0); a ToolkitError: one `error:` line, code 2."""
    try:
        result = fn(*args, **kwargs)
    except ToolkitError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
