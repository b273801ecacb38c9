"""`python -m cdao_cli ...`: the `cdao` command without the installed console script."""

import sys

from cdao_cli.main import main

sys.exit(main())
