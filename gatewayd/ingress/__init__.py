"""Email ingress: the SMTP door, addressing, senders, and taking mail apart."""
