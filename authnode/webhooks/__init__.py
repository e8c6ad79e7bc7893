"""Webhooks: signed JSON events POSTed to the endpoints an administrator registers.

* :mod:`.signing` — Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``) and the per-endpoint ``whsec_`` secrets;
* :mod:`.targets` — the SSRF guard on endpoint URLs, at registration and every delivery;
* :mod:`.events` — event names, the payload and its sortable ids;
* :mod:`.delivery` — endpoints (create, list, delete), ``emit`` (only inserts jobs) and
  the job body that POSTs and records each attempt.
"""
