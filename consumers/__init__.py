"""The edge of subreq: broker connections, consumers, relay and the command line."""
