import sys

from nemoflow.cli.app import main

sys.exit(main())
