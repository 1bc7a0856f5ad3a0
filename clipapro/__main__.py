import sys

from clipapro.cli import main

sys.exit(main())
