"""Stored responses: what ``POST /v1/responses`` keeps when a client asks (``store``), so a later
request can continue it by ``previous_response_id`` and ``GET /v1/responses/{id}`` can read it."""
