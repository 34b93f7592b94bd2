import sys

from aifi_app.cli import main

sys.exit(main())
