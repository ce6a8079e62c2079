"""
Development data: rows that look like LiveKit's, for a developer's database,
demos, tests and benchmarks. Nothing here runs in production.

- :mod:`~conference.devdata.events`: LiveKit webhook bodies as ``analytics``
  stores them (``EventType`` and the JSON builders);
- :mod:`~conference.devdata.target`: the database the data goes into: its
  name, the production guard, emptying and counting the conference tables;
- :mod:`~conference.devdata.seed`: a small hand-written data set
  (``piccolo conference seed``, and ``make run`` on an empty database);
- :mod:`~conference.devdata.distributions` and :mod:`~conference.devdata.ids`:
  what synthetic meetings look like, and their seeded ids;
- :mod:`~conference.devdata.synthetic`: a deterministic stream of synthetic
  meetings, as COPY records;
- :mod:`~conference.devdata.generate`: loading that stream with COPY
  (``piccolo conference generate``).

Example::

    from conference.devdata.generate import generate
    from conference.devdata.seed import seed

    await seed()
    await generate(meetings=1_000, seed=1, replace=True)
"""
