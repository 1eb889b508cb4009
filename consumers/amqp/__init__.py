"""The broker edge: the only package of ``consumers`` that imports pika.

Importing it changes nothing in pika; the composition root applies the workarounds of
``consumers.amqp.patches`` explicitly.
"""
