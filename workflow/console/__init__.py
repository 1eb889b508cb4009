"""The console's core, below the web edge: tokens, sessions' reads (read models of the
database), sign-in requests and the refusals the console records (console.md)."""
