"""Engine: the stored message's bytes are ``message.content``; a field named ``raw`` hid peewee's ``Model.raw``."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.rename_column('message', 'raw', 'content'))


def down(migrator, db):
    migrator.migrate(migrator.rename_column('message', 'content', 'raw'))
