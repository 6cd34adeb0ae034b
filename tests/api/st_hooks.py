"""Schemathesis hooks for the API test (loaded with SCHEMATHESIS_HOOKS): prompt uploads
(audio/wav bodies) are sent as raw bytes, like application/octet-stream."""

import schemathesis

schemathesis.serializer.alias("audio/wav", "application/octet-stream")
