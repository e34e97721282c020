"""The composition root: the ``m4t`` command and the processes it runs.

Everything that wires the layers together lives here and only here: the API process (the gateway's app, plus the
web UI under ``/ui`` when ``M4T_UI_MOUNT`` is on), inference and webhook workers, ``m4t serve`` (Redis, workers,
API, Flower and the web UI as child processes on one machine), and the operator commands (``m4t keys``,
``m4t settings``, ``m4t tiny-model``). ``gateway/``, ``worker/``, ``client/`` and ``shared/`` never import it (the
import-linter contracts in pyproject.toml check it).
"""
