"""consent-relay: an SMTP relay that enforces permission-marketing policy inline."""
