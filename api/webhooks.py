"""Outgoing webhooks (Standard Webhooks): built by the webhooks work of issue 13."""


def connect() -> None:
    """Connect the audit trail to the webhook outbox."""
