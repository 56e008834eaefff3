"""``flash_attn.utils`` of the CPU stand-in: only ``distributed``."""
