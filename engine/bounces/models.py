"""Per-address bounce scores: a hard bounce raises the score, past a threshold the address is disabled."""

from __future__ import annotations

import peewee as pw

from engine.db import BaseModel


class Bounce(BaseModel):
    email_key = pw.CharField(max_length=254, unique=True)
    score = pw.FloatField(default=0.0)
    bounce_count = pw.IntegerField(default=0)
    last_bounce_at = pw.DateTimeField(null=True)
    disabled_until = pw.DateTimeField(null=True, index=True)
    last_reply = pw.TextField(default="")


MODELS = [Bounce]
