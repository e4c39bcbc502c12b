"""Identity: passwords, tokens, sign-up and login, role guards."""
