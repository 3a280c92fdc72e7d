"""Pre-training a small UNITER on the demo (``vlprobe pretrain``, ``model=uniter_mini``)."""
