"""relay.toml, loaded and checked into frozen dataclasses; a bad file raises one ConfigError line.

`model` holds what the file says (the dataclasses and defaults), `table` reads one TOML table
strictly, `sections` checks the sections that need more than a line, and `load` builds the Config.
Everything else imports from here.
"""
from relay.config.load import default_config_path, load_config, parse_config
from relay.config.model import (DEFAULT_ROLE_ADDRESSES, DEFAULT_STAGES, SPEC_STAGES, ClientConfig, Config,
                                ConfigError, DkimConfig, FeedbackSection, HttpSection, ListConfig, OptinSection,
                                RelaySection, UpstreamSection)

__all__ = ["DEFAULT_ROLE_ADDRESSES", "DEFAULT_STAGES", "SPEC_STAGES", "ClientConfig", "Config", "ConfigError",
           "DkimConfig", "FeedbackSection", "HttpSection", "ListConfig", "OptinSection", "RelaySection",
           "UpstreamSection", "default_config_path", "load_config", "parse_config"]
