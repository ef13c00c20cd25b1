"""Deliverability: per-list DMARC mode, author header, ARC sealing and sender check; inbound results per message."""
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('mailing_list', 'dmarc_mode', CharField(max_length=16, default='always')),
        migrator.add_column('mailing_list', 'dmarc_author_in', CharField(max_length=16, default='reply-to')),
        migrator.add_column('mailing_list', 'arc_seal', BooleanField(default=False)),
        migrator.add_column('mailing_list', 'sender_check', CharField(max_length=16, default='hold')),
        migrator.add_column('message', 'authentication', TextField(default='')),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column('mailing_list', 'dmarc_mode'),
        migrator.drop_column('mailing_list', 'dmarc_author_in'),
        migrator.drop_column('mailing_list', 'arc_seal'),
        migrator.drop_column('mailing_list', 'sender_check'),
        migrator.drop_column('message', 'authentication'),
    )
