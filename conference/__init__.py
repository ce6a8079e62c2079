"""
``conference``: the PostgreSQL data layer of a LiveKit video-conference
backend, as a Piccolo ORM app.
"""
