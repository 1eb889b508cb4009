"""End-to-end benchmarks of subreq against a real RabbitMQ and PostgreSQL/SQLite.

Run ``make bench`` (or ``python -m benchmarks.bench --help``); see README "Performance".
"""
