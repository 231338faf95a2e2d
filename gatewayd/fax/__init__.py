"""Faxes out: rendering a queued fax's documents into pages (and, later, the carriers)."""
