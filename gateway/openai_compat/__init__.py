"""The OpenAI-compatible audio API under ``/v1``: transcriptions, translations, speech and models, so the official
``openai`` SDK (and every tool built on it) works against the service. Each call is a job like any other (queue,
cross-job batching, limits, API keys, expiry); its id comes back in the ``x-m4t-job-id`` header. Errors use
OpenAI's body and statuses (``gateway/errors.py``)."""
