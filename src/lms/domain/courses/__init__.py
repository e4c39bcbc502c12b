"""Courses and lessons: authoring, the review workflow, video, and the public catalog."""
