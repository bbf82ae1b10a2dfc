"""Model families: Piper VITS, Kokoro-82M, XTTS-v2, IndexTTS2 (see spec.py and catalog.py)."""
