"""Test settings: the base settings with fast password hashing. Nothing else differs."""

from config.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
