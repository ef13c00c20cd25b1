"""Every model of the schema, in dependency order (what the migrations must build)."""

from __future__ import annotations

from engine import audit, heartbeat
from engine.bounces import models as bounces
from engine.directory import models as directory
from engine.lists import models as lists
from engine.outbound import models as outbound
from engine.posting import keys as dkim_keys
from engine.posting import models as posting

ALL_MODELS = [
    *directory.MODELS,
    *audit.MODELS,
    *lists.MODELS,
    *posting.MODELS,
    *outbound.MODELS,
    *bounces.MODELS,
    *dkim_keys.MODELS,
    *heartbeat.MODELS,
]
