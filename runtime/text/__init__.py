"""Text: normalisation (numbers, dates, units) and the front end (validation, sentence chunking,
phoneme ids)."""
