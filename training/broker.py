"""Publishing a task by name: the modules that queue work never import workers.tasks (which imports the services),
so arrows run one way. A broker that cannot be reached is returned for the caller to record on its row, never
raised into a web request."""
from __future__ import annotations

from celery import current_app
from kombu.exceptions import OperationalError as BrokerUnavailable

# Two quick retries ride out a broker restart without holding a web request for long.
_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def send_by_name(task: str, *, args: list, queue: str) -> BrokerUnavailable | None:
    """Publish ``task`` with ``args`` on ``queue``; the broker's error when it cannot be reached, else None."""
    try:
        current_app.send_task(task, args=args, queue=queue, retry_policy=_RETRY)
    except BrokerUnavailable as exc:
        return exc
    return None
