"""``python -m mediasrv`` is the ``mediasrv`` command."""

import sys

from mediasrv.cli import main

sys.exit(main())
