"""Test settings: the base settings with fast password hashing. Nothing else differs."""

from config.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests make hundreds of API requests a minute with one token; a test of the rate limit gives
# its token a limit of its own (policy["rate_limit_per_minute"]) or overrides this setting.
KEYFLOW_API_RATE_LIMIT_PER_MINUTE = 1_000_000
