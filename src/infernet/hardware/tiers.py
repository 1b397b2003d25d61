"""The reference's VRAM tiers."""

from __future__ import annotations

TIERS = (">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu")


def tier_for_vram_mb(vram_mb: int) -> str:
    """Cards report a little under their sold size (a 24 GB card: ~24564 MiB), so each
    threshold allows 4% below the nominal GiB count."""
    for tier, gb in ((">=48gb", 48), (">=24gb", 24), (">=12gb", 12), (">=8gb", 8)):
        if vram_mb >= gb * 1024 * 0.96:
            return tier
    return "cpu"
