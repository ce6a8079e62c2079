"""
The data lifecycle: deleting what is old, and erasing one person.

- :mod:`~conference.lifecycle.retention`: delete ``analytics`` events (and,
  optionally, whole ended meetings) older than a cut-off, in small keyset
  batches that each commit on their own (``piccolo conference retention``);
- :mod:`~conference.lifecycle.erasure`: erase one participant identity:
  their participant rows, the events about them, and their identity, name
  and metadata inside other events' bodies, one transaction per meeting,
  with a record that holds no personal data (``piccolo conference erase``,
  and the admin's "Erase a participant" form).

Both refuse a database that looks like production unless told ``force``,
as the development-data commands do. ``docs/lifecycle.md`` says how to
schedule retention and what happens to disk space.

Example::

    from conference.lifecycle.erasure import erase_participant
    from conference.lifecycle.retention import cutoff_for, parse_period, run_retention

    result = await run_retention(cutoff_for(parse_period("90d")), meetings=True)
    erased = await erase_participant("alice", erased_by="ops")
"""
