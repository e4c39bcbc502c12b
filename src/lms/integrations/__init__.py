"""Clients for the outside world (mail, SMS, video storage, speech): no HTTP-framework types
here."""
