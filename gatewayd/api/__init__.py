"""The message-store HTTP API (docs/api.md)."""
