"""The console (console.md): the web edge beside the AMQP edge. Pages are rendered on the
server and work without JavaScript; every action becomes a contract command run by the same
``CommandService`` as AMQP's, with the channel ``web`` or ``email_link``."""
