"""BYOK: workspaces' own provider keys, encrypted at rest (docs/byok.md).

``crypto`` (AES-256-GCM under master keys from the environment), ``records`` (the stored row),
``cache`` (decrypted keys in memory for the request path), ``fee`` (what a BYOK request is billed),
``redact`` (keeping keys out of error bodies), ``service`` (create, list, delete, rotate).
"""
