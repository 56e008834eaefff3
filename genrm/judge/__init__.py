"""The judging stage (layer 2): examples and prompts, resumable sharded jobs, backends."""
