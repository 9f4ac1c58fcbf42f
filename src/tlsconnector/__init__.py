"""tlsconnector: forced-TLS partner connectors for any mail software."""
