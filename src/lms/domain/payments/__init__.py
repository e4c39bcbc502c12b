"""Paid enrollment: orders of priced courses, Stripe's webhook, reconciliation and refunds."""
