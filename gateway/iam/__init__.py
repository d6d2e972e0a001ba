"""Identities, tokens, project roles and the audit log: the IAM service the gateway owns."""
