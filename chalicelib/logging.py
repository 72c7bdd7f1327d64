"""The service logger (Powertools). Never log a secret value, a token or a data key."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from chalicelib.config import get_settings

logger = Logger(service="v-secure", level=get_settings().log_level)
