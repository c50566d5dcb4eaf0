"""`relay milter`: the relay's stages inside an existing Postfix, over the milter protocol (SPEC §13)."""
