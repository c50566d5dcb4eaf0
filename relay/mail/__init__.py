"""The message model and what is done to a message: parsing, footer insertion, DSNs, DKIM, addresses."""
