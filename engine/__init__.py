"""Palanquée's core: directory, lists, mail intake, rendering, delivery and bounces. No Flask here."""
