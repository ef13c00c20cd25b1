"""Outgoing mail: the durable outbox, delivery workers and transports (SMTP, local capture)."""
