"""``recsys`` for ``spark-submit``: ``spark-submit [options] infra/spark/recsys_submit.py train --once``.

spark-submit runs a file, not a module (it has no ``-m``), so this file only hands its arguments
to the package's command line, exactly as ``recsys <args>`` would, and exits with its code (in
client mode spark-submit exits with it too, so an orchestrator can branch on it). The package
must be importable by the driver's Python: the project's virtualenv (``PYSPARK_PYTHON``), or the
project's wheel given to ``--py-files`` with its dependencies installed on the cluster.
"""

from __future__ import annotations

import sys

from spark_jobs.cli.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
