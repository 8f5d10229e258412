"""
Numeric precision options shared by training and sampling.
"""

import torch

# precision name -> torch.autocast dtype (None: no autocast, fp32)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
