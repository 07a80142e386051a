//! Rainbow user-defined metrics: the JSONL directory and the SDK HTTP call.
