import sys

from ioreactor.cli import main

sys.exit(main())
