"""The heart of subreq: lifecycle, catalog, persistence and one handler per command."""
