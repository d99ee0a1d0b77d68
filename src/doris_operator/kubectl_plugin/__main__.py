"""``python -m doris_operator.kubectl_plugin``."""

import sys

from . import main

sys.exit(main())
