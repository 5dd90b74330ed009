"""HTTP routes of the webhook-service, one blueprint per audience."""
