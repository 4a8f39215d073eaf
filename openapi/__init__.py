"""The gateway's OpenAPI 3.1 document, generated from its routes and marshmallow schemas.

`python -m openapi` (or `make openapi`) writes `openapi/openapi.yaml`, which is committed; the
gateway serves that file as data at `/openapi.json` and never imports this package. A test
fails when the committed file differs from what the code generates, and when a route of the
app has no entry here.
"""
