"""`python -m training.trainer RUN_SPEC.json`: see `training.trainer.child`."""

import sys

from .child import main

sys.exit(main())
