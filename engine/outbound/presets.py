"""Throttling presets: the large French and international providers, and the default rule.

Starting points, not promises: providers publish little and change often. Administrators edit the
rules in the portal (Administration > Débit d'envoi); migration 0050 stores these as the first
rules (a frozen copy; a test checks that both agree). A rule matches a recipient's domain exactly,
or the MX host that receives its mail (``*.suffix``) when MX lookups are on
(``PALANQUEE_THROTTLE_MX_LOOKUP``), so that a club's domain hosted by Google or Microsoft follows
their rule. Per-minute rates pace copies evenly; hourly and daily limits are quotas.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    domains: tuple[str, ...]
    mx_patterns: tuple[str, ...]
    per_minute: int | None
    per_hour: int | None
    per_day: int | None
    connections: int | None
    per_connection: int | None


SFR_DOMAINS = (
    "sfr.fr", "neuf.fr", "cegetel.net", "club-internet.fr", "9online.fr", "9business.fr", "9cegetel.fr",
    "9modem.com", "noos.fr", "numericable.fr", "numericable.com", "mageos.com", "modulonet.fr", "fnac.net",
    "cario.fr", "evc.net", "estvideo.fr", "infonie.fr", "waika9.com", "internetclub.fr", "club.fr",
    "neufcegetel.fr", "cegetel.fr", "sfrbusinessteam.fr",
)

PRESETS: tuple[Preset, ...] = (
    Preset("orange", "Orange / Wanadoo", ("orange.fr", "wanadoo.fr", "voila.fr"), ("*.orange.fr",),
           per_minute=60, per_hour=1500, per_day=None, connections=2, per_connection=100),
    Preset("sfr", "SFR (Neuf, Club-Internet, Numericable…)", SFR_DOMAINS, ("*.sfr.fr",),
           per_minute=60, per_hour=1500, per_day=None, connections=2, per_connection=50),
    Preset("free", "Free (Alice, Libertysurf)", ("free.fr", "aliceadsl.fr", "libertysurf.fr", "freesbee.fr",
                                                  "worldonline.fr", "online.fr"), ("*.free.fr",),
           per_minute=120, per_hour=3000, per_day=None, connections=3, per_connection=100),
    Preset("laposte", "La Poste", ("laposte.net",), ("*.laposte.net",),
           per_minute=60, per_hour=1500, per_day=None, connections=2, per_connection=100),
    Preset("outlook", "Outlook / Hotmail / Live", ("outlook.com", "outlook.fr", "hotmail.com", "hotmail.fr",
                                                   "live.com", "live.fr", "msn.com"),
           ("*.olc.protection.outlook.com", "*.mail.protection.outlook.com"),
           per_minute=60, per_hour=1200, per_day=None, connections=3, per_connection=100),
    Preset("gmail", "Gmail / Google", ("gmail.com", "googlemail.com"), ("*.google.com", "*.googlemail.com"),
           per_minute=300, per_hour=None, per_day=None, connections=5, per_connection=100),
    Preset("yahoo", "Yahoo / AOL", ("yahoo.com", "yahoo.fr", "ymail.com", "rocketmail.com", "aol.com", "aol.fr"),
           ("*.yahoodns.net",), per_minute=120, per_hour=None, per_day=None, connections=3, per_connection=100),
    Preset("default", "Autres domaines (chacun pour soi)", (), (),
           per_minute=None, per_hour=None, per_day=None, connections=None, per_connection=None),
)
