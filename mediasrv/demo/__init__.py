"""mediasrv.demo: real SIP peers on one machine, for ``mediasrv demo``, tests and benchmarks.

- :mod:`mediasrv.demo.phone`: a pjsua2 phone in its own process, driven by JSON lines.
- :mod:`mediasrv.demo.phones`: :class:`~mediasrv.demo.phones.PhoneProcess`, its asyncio
  controller.
- :mod:`mediasrv.demo.audio`: known test signals, WAV I/O, alignment and correlation checks.
- :mod:`mediasrv.demo.sipp`: bounded SIPp runs and their ``-trace_stat`` results.
- :mod:`mediasrv.demo.server`: ``mediasrv run`` as a child process.
- :mod:`mediasrv.demo.runner`: ``mediasrv demo``.
"""
