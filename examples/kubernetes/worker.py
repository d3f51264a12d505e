"""The example worker of the Kubernetes recipe: executes `resize` tasks, four at a time.

Everything else comes from the environment the Deployment sets: the server
(CONDUCTOR_SERVER_URL), the metrics and health endpoint (CONDUCTOR_WORKER_METRICS_HOST,
CONDUCTOR_WORKER_METRICS_PORT), the journal (CONDUCTOR_WORKER_JOURNAL) and how long running
tasks get to finish after SIGTERM (WORKER_DRAIN_SECONDS, read here).

Signals, with this process as PID 1 of its container: SIGTSTP = quiet (stop polling; running
tasks finish and their results are delivered), SIGCONT = resume, SIGTERM = drain and exit.
"""

import logging
import os
import time

from conductor_worker import run, worker

DRAIN_SECONDS = float(os.environ.get("WORKER_DRAIN_SECONDS", "25"))


@worker("resize", concurrency=4)
def resize(width: int, height: int, max_side: int = 1024) -> dict:
    """Scales width x height down to fit max_side, keeping the aspect ratio (a stand-in for
    real image work: it only takes a little time)."""
    scale = min(1.0, max_side / max(width, height, 1))
    time.sleep(0.1)
    return {"width": round(width * scale), "height": round(height * scale), "scale": scale}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(stop_timeout=DRAIN_SECONDS)
