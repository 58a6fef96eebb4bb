"""``routelora serve``: an OpenAI-compatible HTTP server that picks the expert per request.

The pieces, one file each: the settings (config.py), request parsing (schema.py) and images (images.py), errors in
OpenAI's shape (errors.py), the routing object of a response (routes.py), generation of one group of requests
(generation.py), the dynamic batcher that owns the model (batching.py), the response bodies (responses.py), the
forwarding front end (engine.py) and the ASGI application (app.py). Nothing here imports torch at module level
except the modules that run the model.
"""
