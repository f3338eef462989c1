"""Peer baselines that stoker is compared against.

Each peer is a standalone script, run by path under its own interpreter (the
peer's virtual environment), printing one JSON object per run; it must not
import stoker itself. See torch_dataloader.py.
"""

from pathlib import Path

TORCH_DATALOADER = Path(__file__).with_name("torch_dataloader.py")
