"""Test-session settings for both the test suite (tests/) and the docstring examples (clipapro/):
nothing may reach a model hub, and tokenizers must not fork threads."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
