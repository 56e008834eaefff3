"""The data stage (layer 2): downloads, the embedded demo's data, and model weights."""
