"""Temporal workflows: the policy lapse journey."""
