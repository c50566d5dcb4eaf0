"""The SMTP front: sessions, DATA reading, AUTH and peer limits (aiosmtpd)."""
