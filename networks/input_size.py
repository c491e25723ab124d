"""The input sizes the depth network takes, and the one check of them.

Height and width must be multiples of INPUT_SIZE_MULTIPLE (32): the ResNet encoder halves
the image five times and the decoder doubles it back, so other sizes do not come back to
the input size. They must be at least MIN_INPUT_SIZE (64): the deepest (1/32) feature map
then has two pixels, the least the decoder's reflection padding needs.
"""
from utils import ToolkitError

INPUT_SIZE_MULTIPLE = 32
MIN_INPUT_SIZE = 64


def check_input_size(height, width, flag="--height/--width", what="input size",
                     fix="use e.g. 640x192 or 1024x320"):
    """One-line ToolkitError naming ``flag`` unless ``height`` and ``width`` are multiples
    of INPUT_SIZE_MULTIPLE of at least MIN_INPUT_SIZE; ``what`` names the size in the
    message and ``fix`` says what to do instead."""
    if (height % INPUT_SIZE_MULTIPLE or width % INPUT_SIZE_MULTIPLE or height < MIN_INPUT_SIZE
            or width < MIN_INPUT_SIZE):
        raise ToolkitError(f"{what} {width}x{height} is not a multiple of {INPUT_SIZE_MULTIPLE} "
                           f"of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} ({flag}): {fix}")
