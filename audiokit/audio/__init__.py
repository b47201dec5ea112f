"""Audio layer: reading, writing, resampling, STFT and features."""
