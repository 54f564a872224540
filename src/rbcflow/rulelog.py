"""Logging for the Snakemake rule scripts: everything a job says goes to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def rule_logging(log_path: str | Path, name: str = "rbcflow") -> Iterator[logging.Logger]:
    """Send logging, stderr (progress bars) and any traceback to ``log_path``.

    Snakemake prints the log of a failed job, so the traceback written here is what the
    user sees; the exception is re-raised so the job still fails.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", buffering=1) as handle:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            handlers=[logging.StreamHandler(handle)],
            force=True,
        )
        logger = logging.getLogger(name)
        old_stderr = sys.stderr
        sys.stderr = handle
        try:
            yield logger
        except OSError as exc:
            from rbcflow.io.atomic import write_failure_message

            message = write_failure_message(exc)
            if message is None:
                logger.exception("job failed")
                raise
            # a full disk or a read-only folder: the cause in one line, no traceback
            logger.error("job failed: %s", message)
            raise SystemExit(1) from None
        except BaseException:
            logger.exception("job failed")
            raise
        finally:
            sys.stderr = old_stderr


def limit_threads(threads: int, tensorflow: bool = False) -> None:
    """Keep a job to the cores Snakemake gave it.

    With ``--cores N`` Snakemake runs jobs side by side within N cores; a job whose
    OpenCV or TensorFlow takes a thread per core oversubscribes the machine. TensorFlow's
    pools can only be sized before its first operation, so call this first.
    """
    import cv2

    threads = max(1, int(threads))
    cv2.setNumThreads(threads)
    if tensorflow:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
