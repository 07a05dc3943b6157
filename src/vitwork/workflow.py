"""Glue used by the thin scripts in workflow/scripts: per-job logs and run-table lookups."""

from __future__ import annotations

import contextlib
import logging
import sys


@contextlib.contextmanager
def job_log(snakemake):
    """Send the job's stdout, stderr (progress bars included) and logging to its `log:` file."""
    if not snakemake.log:
        yield
        return
    with open(snakemake.log[0], "w", buffering=1) as handle:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = handle
        logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=handle)
            raise
        finally:
            sys.stdout, sys.stderr = old
