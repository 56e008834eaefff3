"""Stand-in modules for OpenRLHF's CPU training jobs (``genrm.train.openrlhf_cpu``).

This folder is put on ``sys.path`` by that launcher alone, in its own process: the package
``flash_attn`` below is then importable as a top-level name there and nowhere else (the normal
import path holds ``genrm``, not this folder). See ``flash_attn/__init__.py`` for why it exists.
"""
