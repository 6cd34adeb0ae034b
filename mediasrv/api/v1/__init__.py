"""The integrator REST API (issue 12 §1-§3): one module per resource, declared with
:mod:`mediasrv.api.v1.spec` so that validation and the OpenAPI document come from one place."""
