"""``python -m lifelong ...`` (and ``torchrun ... -m lifelong run ...``): the ``lifelong`` command."""

import sys

from .cli import console_main

if __name__ == "__main__":
    sys.exit(console_main())
