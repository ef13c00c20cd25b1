"""Bounces: VERP tokens, DSN parsing and per-address scores."""
