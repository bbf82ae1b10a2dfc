"""Audio: encoders for the response formats, resampling, and time stretching."""
