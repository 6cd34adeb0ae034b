"""mediasrv: call-tracking SIP B2BUA media server."""

__version__ = "0.1.0"
