"""``python -m training.cli ...``: the ``precision-gym`` command."""

import sys

from training.cli.main import main

sys.exit(main())
