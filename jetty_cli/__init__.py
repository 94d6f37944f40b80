"""The `jetty` command line (a client of the HTTP API only)."""
