"""The review page: `bestshot review`, or served by the running daemon (config `review.enabled`).

- service.py: what the page shows and the actions it takes (journaled moves, session lines);
- previews.py: downscaled JPEGs cached by sha256;
- server.py: the Starlette app, its security checks, and uvicorn on 127.0.0.1.
"""
