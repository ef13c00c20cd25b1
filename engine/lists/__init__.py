"""Mailing lists: domains, lists, criteria, subscriptions, opt-outs and resolve()."""
