"""The broker side of "never lost": an unacknowledged message comes back to the queue once its consumer stops
heart-beating, and stays hidden while the consumer's heartbeat extends it (kombu's Redis transport, real Redis)."""

import time

import pytest
import redis
from kombu import Connection

from wanray.serving.jobs import new_job_id
from wanray.serving.queue import TASK_NAME, BrokerVisibility, TaskQueue, queued_messages


@pytest.fixture
def broker(serve_config):
    client = redis.Redis.from_url(serve_config.redis_url, decode_responses=True)
    yield client
    client.delete("unacked", "unacked_index")


def test_enqueue_uses_the_job_id_as_the_task_id(serve_config, broker):
    job_id = new_job_id()
    TaskQueue(serve_config).enqueue(job_id)
    assert queued_messages(broker, serve_config.queue_name) == 1
    message = __import__("json").loads(broker.lindex(serve_config.queue_name, 0))
    assert message["headers"]["id"] == job_id and message["headers"]["task"] == TASK_NAME


def test_heartbeat_keeps_a_message_hidden_and_a_silent_consumer_loses_it(serve_config, broker):
    job_id = new_job_id()
    TaskQueue(serve_config).enqueue(job_id)
    with Connection(serve_config.redis_url, transport_options={"visibility_timeout": 5}) as conn:
        queue = conn.SimpleQueue(serve_config.queue_name)
        message = queue.get(timeout=5)  # delivered, not acknowledged (a replica running the job)
        assert message.headers["id"] == job_id
        assert queued_messages(broker, serve_config.queue_name) == 0
        visibility = BrokerVisibility(broker, job_id)
        visibility.extend()
        assert visibility.tag == message.delivery_tag
        assert broker.zscore("unacked_index", visibility.tag) == pytest.approx(time.time(), abs=2)
        qos = queue.consumer.channel.qos
        qos.restore_visible(num=10, interval=1)
        assert queued_messages(broker, serve_config.queue_name) == 0  # still hidden: the replica is alive
        # the replica stops heart-beating (killed): 10 s later the sweep hands the message back
        broker.zadd("unacked_index", {visibility.tag: time.time() - 10})
        qos.restore_visible(num=10, interval=1)
        assert queued_messages(broker, serve_config.queue_name) == 1
        assert broker.hget("unacked", visibility.tag) is None
        # extending an acknowledged (here: restored) message never brings it back
        visibility.extend()
        assert broker.zscore("unacked_index", visibility.tag) is None
        again = queue.get(timeout=5)
        assert again.headers["id"] == job_id  # the same job id: the redelivery is recognised
        again.ack()
        queue.close()


def test_no_tag_no_op(serve_config, broker):
    visibility = BrokerVisibility(broker, new_job_id())
    visibility.extend()
    assert visibility.tag is None
