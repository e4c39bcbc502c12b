"""Creator applications: learners apply, admins approve (the user becomes CREATOR) or reject."""
