"""One module per page of console.md: sign in, subscription (with the change form),
requests, request, and the decision link."""
