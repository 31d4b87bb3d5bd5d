"""Worker identity for Airflow's ``[core] hostname_callable`` (``tvb_worker.hostname``).

Several Celery workers on one machine (``.ci/stack.sh start --celery``) share the host name; each gets its own
``TVB_WORKER_NAME`` so that a task instance's ``hostname`` tells which worker ran it. Elsewhere: the FQDN, as
Airflow's default.
"""
from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``TVB_WORKER_NAME`` if set, else the machine's fully qualified domain name."""
    return os.environ.get("TVB_WORKER_NAME") or socket.getfqdn()
