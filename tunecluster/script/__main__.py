"""`python -m tunecluster.script PATH [ARGS...]`: run a Keras Tuner script as one role of a
tunecluster run (see `tunecluster.script.launcher`)."""

from __future__ import annotations

import logging
import os
import sys

from tunecluster.core.errors import TuneclusterError


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    from tunecluster.script.launcher import run_script

    try:
        return run_script(argv[0], argv[1:])
    except TuneclusterError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
