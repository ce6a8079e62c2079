"""A host table with a foreign key into conference's schema."""

from piccolo.columns import ForeignKey, OnDelete, Text
from piccolo.table import Table

from conference.tables import Meeting


class Note(Table, tablename="host_notes"):
    """A note someone took in a meeting."""

    meeting = ForeignKey(references=Meeting, on_delete=OnDelete.cascade)
    text = Text()
