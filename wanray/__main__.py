"""``python -m wanray ...`` is the ``wanray`` command."""

import sys

from wanray.cli import main

sys.exit(main())
