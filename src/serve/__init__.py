"""The verification service: enroll, verify (1:1) and identify (1:N, open set) over HTTP.

Layer ``serve``: above ``drift``; nothing imports it but the command line.

* :mod:`.settings`: the validated ``serve`` section of the composed config.
* :mod:`.tokens`: tenants' bearer tokens (stored hashed).
* :mod:`.store`: the encrypted template store (SQLAlchemy: SQLite or PostgreSQL).
* :mod:`.intake`: an uploaded file -> checked speech -> embedding (the one VAD and quality checks).
* :mod:`.engine`: enroll / verify / identify / delete with calibrated decisions, replay flags,
  the production log and the audit log.
* :mod:`.replay`: replay flags (recent attempts in memory, enrollment audio hashes);
* :mod:`.audit`: the service's records on the one audit chain, the head anchored;
* :mod:`.reload`: following the champion alias (``POST /admin/reload``, a poll);
* :mod:`.migrate`: ``speakerops templates migrate`` (re-embed from retained enrollment audio);
* :mod:`.app`: the FastAPI application; :mod:`.metrics`: Prometheus metrics;
  :mod:`.client`: a small HTTP client (what ``speakerops enroll|verify|identify`` use).
"""
