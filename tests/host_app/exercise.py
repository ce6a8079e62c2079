"""
Start the host app (its lifespan: migrate, open the pool), call its routes,
shut it down, and print what happened as JSON for tests/test_host_app.py.
"""

import json

from app import app
from starlette.testclient import TestClient

INJECTION = "'); DROP TABLE host_notes; --"

with TestClient(app) as client:
    ready = client.get("/ready")
    created = client.post("/notes", json={"room": "standup", "text": INJECTION})
    rejected = client.post("/notes", json={"room": "  ", "text": "blank room"})

print(
    json.dumps(
        {
            "ready": [ready.status_code, ready.json()],
            "created": [created.status_code, created.json()],
            "rejected": [rejected.status_code, rejected.json()],
        }
    )
)
