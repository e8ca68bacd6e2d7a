import sys

from vnmlib.cli import main

sys.exit(main())
