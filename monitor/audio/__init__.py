"""Audio in: files (decoding, down-mixing, resampling to 16 kHz) and the microphone."""
