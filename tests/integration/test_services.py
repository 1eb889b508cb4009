"""The service fixtures hand out fresh, working resources."""

from __future__ import annotations

import pika
from sqlalchemy import create_engine, make_url, text


def test_postgres_url_is_a_fresh_database(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            name = conn.execute(text("select current_database()")).scalar_one()
    finally:
        engine.dispose()
    assert name == make_url(postgres_url).database
    assert name != "postgres"
    assert name.startswith("subreq_test_")


def test_amqp_url_round_trips_a_message(amqp_url: str) -> None:
    params = pika.URLParameters(amqp_url)
    assert params.virtual_host.startswith("subreq_test_")
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare(queue="", exclusive=True).method.queue
        channel.basic_publish(exchange="", routing_key=queue, body=b"ping")
        _method, _properties, body = channel.basic_get(queue, auto_ack=True)
    finally:
        connection.close()
    assert body == b"ping"
