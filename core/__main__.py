import os
import sys

from core.cli import main

code = main()
if "tensorflow" in sys.modules:
    # TensorFlow's teardown at interpreter exit takes ~1.5 s and does nothing we need: every file
    # is written and closed by now, so flush and leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
