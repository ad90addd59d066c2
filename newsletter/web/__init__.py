"""The public web app: subscribe with double opt-in, one-click unsubscribe, the archive."""
