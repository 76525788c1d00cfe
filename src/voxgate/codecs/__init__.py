"""Audio formats: normalising upstream PCM, encoders for every sink, the playout buffer."""
