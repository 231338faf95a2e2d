"""gatewayd: an email-to-fax and email-to-SMS gateway with a unified mailbox."""

__version__ = "0.1.0"
