"""Policy: the ``[rules]`` section of the config (placeholder, filled by the rules work)."""

import msgspec


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Compliance policy decoded from the ``[rules]`` TOML table; every field has a default."""
