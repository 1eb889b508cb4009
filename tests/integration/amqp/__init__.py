"""End-to-end tests over the real RabbitMQ broker and database (the wire contract)."""
