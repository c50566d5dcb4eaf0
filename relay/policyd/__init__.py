"""`relay policy`: Postfix policy delegation (check_policy_service) with the relay's RCPT decisions (SPEC §13)."""
