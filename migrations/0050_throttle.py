"""Outbound: per-destination throttling rules (with the presets of engine/outbound/presets.py, frozen
here) and the shared pace of each group."""
from peewee import *

PRESETS = (
    ('orange', 'Orange / Wanadoo', 'orange.fr\nwanadoo.fr\nvoila.fr', '*.orange.fr', 60, 1500, None, 2, 100),
    ('sfr', 'SFR (Neuf, Club-Internet, Numericable…)',
     'sfr.fr\nneuf.fr\ncegetel.net\nclub-internet.fr\n9online.fr\n9business.fr\n9cegetel.fr\n9modem.com\nnoos.fr\n'
     'numericable.fr\nnumericable.com\nmageos.com\nmodulonet.fr\nfnac.net\ncario.fr\nevc.net\nestvideo.fr\n'
     'infonie.fr\nwaika9.com\ninternetclub.fr\nclub.fr\nneufcegetel.fr\ncegetel.fr\nsfrbusinessteam.fr',
     '*.sfr.fr', 60, 1500, None, 2, 50),
    ('free', 'Free (Alice, Libertysurf)', 'free.fr\naliceadsl.fr\nlibertysurf.fr\nfreesbee.fr\nworldonline.fr\nonline.fr',
     '*.free.fr', 120, 3000, None, 3, 100),
    ('laposte', 'La Poste', 'laposte.net', '*.laposte.net', 60, 1500, None, 2, 100),
    ('outlook', 'Outlook / Hotmail / Live', 'outlook.com\noutlook.fr\nhotmail.com\nhotmail.fr\nlive.com\nlive.fr\nmsn.com',
     '*.olc.protection.outlook.com\n*.mail.protection.outlook.com', 60, 1200, None, 3, 100),
    ('gmail', 'Gmail / Google', 'gmail.com\ngooglemail.com', '*.google.com\n*.googlemail.com', 300, None, None, 5, 100),
    ('yahoo', 'Yahoo / AOL', 'yahoo.com\nyahoo.fr\nymail.com\nrocketmail.com\naol.com\naol.fr', '*.yahoodns.net',
     120, None, None, 3, 100),
    ('default', 'Autres domaines (chacun pour soi)', '', '', None, None, None, None, None),
)


def up(migrator, db):
    class ThrottleRule(Model):
        name = CharField(max_length=32, unique=True)
        label = CharField(max_length=100)
        domains = TextField(default='')
        mx_patterns = TextField(default='')
        per_minute = IntegerField(null=True)
        per_hour = IntegerField(null=True)
        per_day = IntegerField(null=True)
        connections = IntegerField(null=True)
        per_connection = IntegerField(null=True)
        updated_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'throttle_rule'

    class ThrottleState(Model):
        key = CharField(max_length=300, unique=True)
        tat = DateTimeField()
        horizon = DateTimeField()
        hour_start = DateTimeField()
        hour_count = IntegerField(default=0)
        day_start = DateTimeField()
        day_count = IntegerField(default=0)
        factor = FloatField(default=1.0)
        factor_at = DateTimeField()
        slowdowns = IntegerField(default=0)
        slowed_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'throttle_state'

    db.create_tables([ThrottleRule, ThrottleState])
    fields = ('name', 'label', 'domains', 'mx_patterns', 'per_minute', 'per_hour', 'per_day', 'connections',
              'per_connection')
    ThrottleRule.insert_many([dict(zip(fields, preset)) for preset in PRESETS]).execute()


def down(migrator, db):
    migrator.migrate(migrator.drop_table('throttle_state'), migrator.drop_table('throttle_rule'))
