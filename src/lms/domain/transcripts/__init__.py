"""Transcription: jobs, worker tasks, captions, transcript search."""
