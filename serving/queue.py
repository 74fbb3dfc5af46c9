"""The job queue: Ray Serve's asynchronous inference (a ``@task_consumer`` deployment fed by Celery, with Redis
as broker and result backend).

Delivery guarantees come from Celery's late acknowledgement: a message is acknowledged only when its
handler returns, so a replica that dies mid-job leaves it unacknowledged and the broker hands it to another
replica once its visibility timeout passes. A live replica keeps pushing that timeout forward
(``BrokerVisibility``), so the timeout can be short (a dead replica's job moves on within about a minute)
while jobs themselves may run for many minutes. The Celery task id is the job id, so a redelivered message
is recognised as the same job (see ``JobStore.claim``).
"""

from __future__ import annotations

import json
import logging
import time

from wanray.serving.config import ServeConfig

log = logging.getLogger(__name__)

TASK_NAME = "wanray.generate_video"
# Celery retries a handler that raised (only infrastructure errors escape it: Redis unreachable) with
# exponential backoff capped at 60 s: about 10 minutes of outage before the message is given up.
INFRA_RETRIES = 12


def task_processor_config(config: ServeConfig):
    """The ``TaskProcessorConfig`` shared by the ingress (producer) and the generator replicas (consumers)."""
    from ray.serve.schema import CeleryAdapterConfig, TaskProcessorConfig

    timeout = config.redelivery_timeout_s
    return TaskProcessorConfig(
        queue_name=config.queue_name,
        adapter_config=CeleryAdapterConfig(
            broker_url=config.redis_url,
            backend_url=config.redis_url,
            broker_transport_options={
                "visibility_timeout": timeout,
                # sweep for the messages of dead replicas often enough to honour the timeout
                "unacked_restore_interval": max(1.0, timeout / 4),
                "unacked_restore_throttle": 1,
            },
            app_custom_config={
                # one job at a time per replica and nothing reserved beyond it, so queued jobs stay in
                # the shared queue, visible to the autoscaler and free for any replica
                "worker_prefetch_multiplier": 1,
                "result_expires": config.job_ttl_s,
                "broker_connection_retry_on_startup": True,
                "worker_hijack_root_logger": False,
                "worker_redirect_stdouts": False,
            },
        ),
        max_retries=INFRA_RETRIES,
    )


class TaskQueue:
    """The producer side, used by the ingress: put a job id on the queue."""

    def __init__(self, config: ServeConfig):
        from ray.serve.task_consumer import instantiate_adapter_from_config

        self.adapter = instantiate_adapter_from_config(task_processor_config(config))
        self.queue_name = config.queue_name

    def enqueue(self, job_id: str) -> None:
        # task_id = job id: one job, one message id, however often it is delivered
        self.adapter.enqueue_task_sync(TASK_NAME, kwargs={"job_id": job_id}, task_id=job_id)


class BrokerVisibility:
    """Keeps a running job's message invisible to other replicas while this replica is alive.

    kombu's Redis transport keeps each unacknowledged message in the hash ``unacked`` (delivery tag ->
    message) and its delivery time in the sorted set ``unacked_index``; a sweep hands messages older than
    the visibility timeout to other consumers. Refreshing our message's time there is the Redis form of
    SQS's ChangeMessageVisibility. Other brokers (RabbitMQ) redeliver on connection loss by themselves:
    then this finds no tag and does nothing.
    """

    UNACKED = "unacked"
    UNACKED_INDEX = "unacked_index"

    def __init__(self, client, job_id: str):
        self.r = client
        self.job_id = job_id
        self.tag: str | None = None

    def find_tag(self) -> str | None:
        for tag, value in self.r.hscan_iter(self.UNACKED, count=100):
            try:
                headers = json.loads(value)[0].get("headers") or {}
            except (ValueError, AttributeError, IndexError, TypeError):
                continue
            if headers.get("id") == self.job_id:
                return tag
        return None

    def extend(self) -> None:
        if self.tag is None:
            self.tag = self.find_tag()
            if self.tag is None:
                return
        # XX: only if still unacknowledged (never re-adds an acknowledged message)
        self.r.zadd(self.UNACKED_INDEX, {self.tag: time.time()}, xx=True)


def queued_messages(client, queue_name: str) -> int:
    """Messages waiting in the broker's queue (not yet delivered to any replica)."""
    return int(client.llen(queue_name))
