"""A pure-PyTorch stand-in for the two ``flash_attn`` modules that OpenRLHF 0.11.2 imports at
module level, whatever its flags (``openrlhf/models/ring_attn_utils.py``)::

    from flash_attn.bert_padding import index_first_axis, pad_input, rearrange, unpad_input
    from flash_attn.utils.distributed import all_gather

Real flash-attn cannot be imported without CUDA. On CPU, OpenRLHF calls these functions only
with ``--ds.packing_samples`` or ring attention, which the CPU jobs leave off (they need
flash-attention kernels); the versions here follow the documented behaviour of flash-attn 2.8's
functions, so that a call would still be right, and the tests check them against plain indexing.
There are no attention kernels here: a job that asks for ``flash_attention_2`` must fail.
"""

__version__ = "0.0.0+genrm.cpu"  # not a flash-attn release: transformers must not take it for one
