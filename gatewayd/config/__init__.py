"""Configuration: one TOML file validated into frozen, typed settings."""

from gatewayd.config.loader import DEFAULT_PATH, ENV_VAR, config_path, load_config, parse_config
from gatewayd.config.settings import (
    ApiSettings,
    DestinationPolicy,
    FaxSettings,
    HostPort,
    LogSettings,
    MailboxSettings,
    NotifySettings,
    Settings,
    SmppLinkSettings,
    SmsSettings,
    SmtpListener,
    SmtpSettings,
    User,
)

__all__ = [
    "DEFAULT_PATH",
    "ENV_VAR",
    "ApiSettings",
    "DestinationPolicy",
    "FaxSettings",
    "HostPort",
    "LogSettings",
    "MailboxSettings",
    "NotifySettings",
    "Settings",
    "SmppLinkSettings",
    "SmsSettings",
    "SmtpListener",
    "SmtpSettings",
    "User",
    "config_path",
    "load_config",
    "parse_config",
]
