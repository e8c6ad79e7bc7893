"""Signing in with OpenID Connect providers (``OIDC_PROVIDERS``): discovery and keys
(:mod:`.discovery`), ID-token checks (:mod:`.idtoken`), the flow and linking
(:mod:`.flow`), and what the hosted pages show (:mod:`.providers`)."""
