import sys

from nemoflow.cli.main import main

sys.exit(main())
