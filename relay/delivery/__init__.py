"""Handing copies to the upstream: the pooled SMTP client, Maildir, and the retry spool."""
