import sys

from hybridsched.cli import main

sys.exit(main())
