"""Secrets in use: HMAC tokens for links, scrypt password and API-token hashes."""
